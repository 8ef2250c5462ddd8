"""Logs (rotation, tail, follow), the python-callable mode, blocking and silent modes."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from steward import Service, ServiceState
from steward.runtimes.base import NoPreviousRun
from tests.support.manifests import manifest
from tests.support.waits import wait_fast as wait_for

PY = sys.executable

# Four bursts of 1000 lines (~88 KB each); after each, the file ARGV[1]<burst> appears.
CHATTY = """
import sys, time
for burst in range(4):
    for i in range(1000): print(f'line {burst}-{i:04d} ' + 'x'*80)
    sys.stdout.flush(); open(sys.argv[1] + str(burst), 'w').close(); time.sleep(0.5)
time.sleep(600)
"""


def test_log_rotation_keeps_backups(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    done = tmp_path / "done"
    spec = {
        "daemon": {
            "command": [PY, "-u", "-c", CHATTY, str(done)],
            "log": {"maxBytes": 65536, "backups": 2},
        }
    }
    svc = Service.from_manifest(manifest("chatty", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=0)
    log = svc.runtime_dir / "daemon.log"
    for burst in range(4):
        wait_for(lambda b=burst: Path(f"{done}{b}").exists(), timeout=20)  # type: ignore[misc]
        # the relay rotates as the log grows (each burst is ~88 KB), without reconcile()
        # The marker may come before the writer has drained the pipe: wait for the last line.
        wait_for(lambda b=burst: f"line {b}-0999 " in log.read_text())  # type: ignore[misc]
        files = sorted(svc.runtime_dir.glob("daemon.log*"))
        assert all(f.stat().st_size <= 65536 for f in files), files
        kept = "".join(f.read_text() for f in files)
        assert f"line {burst}-0999 " in log.read_text()
        assert f"line {burst}-0000 " in kept
    assert (svc.runtime_dir / "daemon.log.2").exists()
    assert not (svc.runtime_dir / "daemon.log.3").exists()  # only `backups` files are kept
    assert "line 0-0000 " not in "".join(f.read_text() for f in svc.runtime_dir.glob("daemon.log*"))


def test_tail_and_follow(state_dir: Path, services: list[Service]) -> None:
    code = (
        "import time\nfor i in range(30):\n    print(f'tick {i}', flush=True); time.sleep(0.05)\n"
    )
    spec = {"daemon": {"command": [PY, "-c", code]}, "restartPolicy": "Never"}
    svc = Service.from_manifest(manifest("ticker", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=0)
    followed = list(svc.get_logs(follow=True))  # from the start; ends when the process ends
    assert followed[-1] == "tick 29"
    assert [f"tick {i}" for i in range(30)] == [
        line for line in followed if line.startswith("tick")
    ]
    assert list(svc.get_logs(tail=3)) == ["tick 27", "tick 28", "tick 29"]


def test_python_callable_mode(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {
            "python": {
                "callable": "tests.support.apps.ctapp:serve",
                "kwargs": {"port": "$(PORT)", "greeting": "bonjour", "host": "127.0.0.1"},
            }
        },
        "endpoint": {"protocol": "http"},
    }
    svc = Service.from_manifest(manifest("pyapp", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    body = requests.get(svc.status.endpoint.uri, timeout=5).json()  # type: ignore[arg-type]
    assert body["greeting"] == "bonjour"
    assert body["pid"] == svc.status.runtime["pid"]  # a fresh interpreter, not us
    assert any("serving bonjour" in line for line in svc.get_logs())


def test_python_callable_import_error_is_reported(state_dir: Path, services: list[Service]) -> None:
    spec = {"daemon": {"python": {"callable": "no_such_module_xyz:run"}}, "restartPolicy": "Never"}
    svc = Service.from_manifest(manifest("pybad", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=10)
    wait_for(lambda: svc.reconcile() is not None and svc.status.state is ServiceState.ERROR)
    assert "exited with code 1" in svc.status.last_error
    assert any("No module named 'no_such_module_xyz'" in line for line in svc.get_logs())


def test_blocking_mode_runs_in_the_caller(state_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    spec = {
        "daemon": {"command": [PY, "-c", f"open({str(out)!r},'w').write('x')"], "blocking": True},
        "restartPolicy": "Never",
    }
    svc = Service.from_manifest(manifest("blocker", spec), state_dir=state_dir)
    svc.start(timeout=5)
    assert out.exists()  # start() returned only after the command finished
    assert svc.status.state is ServiceState.INACTIVE
    assert svc.status.last_exit_code == 0


def test_silent_mode_writes_no_log(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {
            "command": [PY, "-c", "print('noise'); import time; time.sleep(600)"],
            "silent": True,
        }
    }
    svc = Service.from_manifest(manifest("quiet", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    assert list(svc.get_logs()) == []
    assert not (svc.runtime_dir / "daemon.log").exists()


def test_supervise_thread_restarts_and_stops(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {"command": [PY, "-c", "import time; time.sleep(0.2)"]},
        "backoff": {"initialSeconds": 0.05},
    }
    svc = Service.from_manifest(manifest("loop", spec), state_dir=state_dir)
    services.append(svc)
    stop = threading.Event()
    t = threading.Thread(target=svc.supervise, args=(stop,))
    t.start()
    try:
        wait_for(lambda: svc.status.restarts >= 2, timeout=10)
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive()


def test_survives_the_caller(state_dir: Path, services: list[Service], tmp_path: Path) -> None:
    """A daemon started by a Python process that exits keeps running and is adopted later."""
    script = (
        "import sys; sys.path[:0] = sys.argv[2:]\n"
        "from steward import Service\n"
        "m = {'metadata': {'name': 'orphan'}, 'spec': {'daemon': {'command': ['sleep', '600']}}}\n"
        "assert Service.from_manifest(m, state_dir=sys.argv[1]).start(timeout=10)\n"
    )
    import subprocess

    subprocess.run([PY, "-c", script, str(state_dir), *sys.path], check=True, timeout=60)
    svc = Service.from_manifest(
        manifest("orphan", {"daemon": {"command": ["sleep", "600"]}}), state_dir=state_dir
    )
    services.append(svc)
    assert svc.is_running
    t0 = time.monotonic()
    assert svc.stop(timeout=10)
    assert time.monotonic() - t0 < 5


def test_a_restart_starts_a_new_log_and_keeps_the_previous(
    state_dir: Path, services: list[Service]
) -> None:
    code = "import uuid,time; print('run', uuid.uuid4(), flush=True); time.sleep(0.5); raise SystemExit(3)"
    spec = {
        "daemon": {"command": [PY, "-c", code]},
        "restartPolicy": "Always",
        "backoff": {"initialSeconds": 0.2, "maxSeconds": 0.4},
    }
    svc = Service.from_manifest(manifest("reruns", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=0)
    with pytest.raises(NoPreviousRun):
        svc.get_logs(previous=True)
    wait_for(lambda: list(svc.get_logs()) != [])
    [first] = list(svc.get_logs())

    def restarted() -> bool:
        svc.reconcile()
        return svc.status.restarts >= 1 and list(svc.get_logs()) != []

    wait_for(restarted, timeout=30)
    assert list(svc.get_logs(previous=True)) == [first]
    [now] = list(svc.get_logs())
    assert now != first and now.startswith("run ")
    assert not list(svc.runtime_dir.glob("daemon.log.*"))  # no backups made by the move
