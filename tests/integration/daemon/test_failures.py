"""Restarts, back-off, kills and every bad-input path of the daemon runtime."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from steward import Service, ServiceState
from steward.runtimes.process import ProcessRecord
from tests.support.manifests import manifest
from tests.support.ports import free_port, taken_port
from tests.support.waits import wait_fast as wait_for

PY = sys.executable


def test_crash_restarts_with_doubling_backoff(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {"command": [PY, "-c", "import sys; sys.exit(3)"]},
        "restartPolicy": "Always",
        "backoff": {"initialSeconds": 0.2, "maxSeconds": 0.8},
    }
    svc = Service.from_manifest(manifest("crashy", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=5) is False
    assert svc.status.state is ServiceState.ERROR
    assert "exited with code 3" in svc.status.last_error
    starts: list[float] = []
    delays: list[float] = []  # the back-off the engine scheduled after each crash
    deadline = time.monotonic() + 20
    last = svc.status.restarts
    scheduled = svc._engine.next_restart_at
    while time.monotonic() < deadline and len(starts) < 4:
        before = time.time()
        svc.reconcile()
        after = time.time()
        at = svc._engine.next_restart_at
        if at is not None and at != scheduled:
            scheduled = at
            # scheduled during this call: the delay lies in [at - after, at - before]
            delays.append(
                next(
                    (
                        d
                        for d in (0.2, 0.4, 0.8, 1.6)
                        if at - after - 0.01 <= d <= at - before + 0.01
                    ),
                    -1.0,
                )
            )
        if svc.status.restarts != last:
            last = svc.status.restarts
            starts.append(time.monotonic())
        time.sleep(0.02)
    assert len(starts) == 4, starts
    # after the first crash's 0.2 s: doubling, capped at maxSeconds (timing-independent)
    assert delays[:3] == [0.4, 0.8, 0.8], delays
    # and the restarts really waited at least that long (lower bounds hold under any load)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.35 and gaps[1] >= 0.75 and gaps[2] >= 0.75, gaps
    assert svc.status.last_exit_code == 3
    ready = svc.status.condition("Ready")
    assert ready is not None and ready.status == "False"


def test_on_failure_does_not_restart_success(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {"command": ["true"]},
        "restartPolicy": "OnFailure",
        "backoff": {"initialSeconds": 0},
    }
    svc = Service.from_manifest(manifest("oneshot", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=5)
    for _ in range(20):
        svc.reconcile()
        time.sleep(0.02)
    assert svc.status.restarts == 0
    assert svc.status.state is ServiceState.INACTIVE
    assert svc.status.condition("Ready").reason == "Completed"  # type: ignore[union-attr]


def test_never_policy_leaves_failure_visible(state_dir: Path, services: list[Service]) -> None:
    spec = {"daemon": {"command": ["false"]}, "restartPolicy": "Never"}
    svc = Service.from_manifest(manifest("never", spec), state_dir=state_dir)
    services.append(svc)
    assert not svc.start(timeout=5)
    for _ in range(10):
        svc.reconcile()
    assert svc.status.restarts == 0
    assert svc.is_failed
    assert "exited with code 1" in svc.status.last_error


def test_liveness_failure_restarts(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    # Healthy while /tmp/x/ok exists; the file goes away -> probe 404 -> restart.
    (tmp_path / "ok").write_text("ok")
    spec = {
        "daemon": {
            "command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"],
            "workingDir": str(tmp_path),
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/ok"}, "periodSeconds": 0.1, "failureThreshold": 2},
        },
        "backoff": {"initialSeconds": 0},
    }
    svc = Service.from_manifest(manifest("live", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    pid = svc.status.runtime["pid"]
    (tmp_path / "ok").unlink()
    wait_for(lambda: svc.reconcile() is not None and svc.status.restarts >= 1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "liveness probe failed" in svc.status.last_error
    (tmp_path / "ok").write_text("ok")
    wait_for(lambda: svc.reconcile() is not None and svc.status.state is ServiceState.ACTIVE)
    assert svc.status.runtime["pid"] != pid


def test_sigterm_ignoring_daemon_is_killed_after_grace(
    state_dir: Path, services: list[Service]
) -> None:
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
    spec = {"daemon": {"command": [PY, "-c", code], "stopGracePeriodSeconds": 0.7}}
    svc = Service.from_manifest(manifest("stubborn", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    wait_for(lambda: "ready" in list(svc.get_logs()))
    pid = svc.status.runtime["pid"]
    t0 = time.monotonic()
    assert svc.stop(timeout=30)
    elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed < 5, elapsed
    assert not psutil.pid_exists(pid)
    assert svc.runtime.observe().details["lastExitCode"] == 137


def test_custom_stop_signal(state_dir: Path, tmp_path: Path, services: list[Service]) -> None:
    marker = tmp_path / "got-int"
    code = f"import signal,sys,time\ndef h(*a):\n    open({str(marker)!r},'w').write('x'); sys.exit(0)\nsignal.signal(signal.SIGINT, h)\nprint('ready', flush=True)\ntime.sleep(600)"
    spec = {"daemon": {"command": [PY, "-c", code], "stopSignal": "SIGINT"}}
    svc = Service.from_manifest(manifest("sigint", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    wait_for(lambda: "ready" in list(svc.get_logs()))
    assert svc.stop(timeout=10)
    assert marker.exists()
    assert svc.runtime.observe().details["lastExitCode"] == 0


def test_grandchildren_gone_after_stop(state_dir: Path, services: list[Service]) -> None:
    # A child, and a grandchild whose parent exited (re-parented to init, same session).
    code = (
        "import subprocess,time,os,sys\n"
        "subprocess.Popen(['sleep','600'])\n"
        "if os.fork()==0:\n"
        "    subprocess.Popen(['sleep','601']); os._exit(0)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    svc = Service.from_manifest(
        manifest("family", {"daemon": {"command": [PY, "-c", code]}}), state_dir=state_dir
    )
    services.append(svc)
    assert svc.start(timeout=10)
    wait_for(lambda: "ready" in list(svc.get_logs()))
    pid = svc.status.runtime["pid"]
    session = [p for p in psutil.process_iter() if _sid(p.pid) == pid]
    wait_for(
        lambda: (
            len([p for p in psutil.process_iter() if _sid(p.pid) == pid and p.name() == "sleep"])
            == 2
        )
    )
    assert len(session) >= 2
    assert svc.stop(timeout=10)
    wait_for(
        lambda: (
            not [
                p
                for p in psutil.process_iter()
                if _sid(p.pid) == pid and p.status() != psutil.STATUS_ZOMBIE
            ]
        ),
        timeout=5,
    )


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_reused_pid_is_not_mistaken_for_the_daemon(
    state_dir: Path, services: list[Service]
) -> None:
    svc = Service.from_manifest(
        manifest("reuse", {"daemon": {"command": ["sleep", "600"]}}), state_dir=state_dir
    )
    services.append(svc)
    assert svc.start(timeout=10)
    assert svc.stop(timeout=10)
    # An unrelated process now holds a PID the pid file names (as after PID reuse).
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        pid_file = svc.runtime_dir / "daemon.pid"
        ProcessRecord(
            pid=stranger.pid,
            create_time=psutil.Process(stranger.pid).create_time() - 1000,
            cmdline=["sleep", "600"],
        ).save(pid_file)
        again = Service.from_manifest(
            manifest("reuse", {"daemon": {"command": ["sleep", "600"]}}), state_dir=state_dir
        )
        assert again.runtime.observe().state is not ServiceState.ACTIVE
        again.stop(timeout=5)
        assert stranger.poll() is None, "the stranger was killed"
    finally:
        stranger.kill()
        stranger.wait()


def test_port_conflict_without_allocate_is_an_error(
    state_dir: Path, services: list[Service]
) -> None:
    with taken_port() as taken:
        spec = {
            "daemon": {"command": ["sleep", "600"]},
            "endpoint": {"port": taken, "allocatePort": False},
        }
        svc = Service.from_manifest(manifest("clash", spec), state_dir=state_dir)
        services.append(svc)
        assert svc.start(timeout=5) is False
        assert svc.status.state is ServiceState.ERROR
        assert (
            f"port {taken}" in svc.status.last_error
            and "allocatePort is false" in svc.status.last_error
        )
        assert svc.status.condition("Ready").reason == "PortUnavailable"  # type: ignore[union-attr]
        assert svc.runtime.observe().state is ServiceState.INACTIVE


def test_port_conflict_with_allocate_picks_another(
    state_dir: Path, services: list[Service]
) -> None:
    with taken_port() as taken:
        spec = {
            "daemon": {"command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]},
            "endpoint": {"protocol": "http", "port": taken},
        }
        svc = Service.from_manifest(manifest("moved", spec), state_dir=state_dir)
        services.append(svc)
        assert svc.start(timeout=20), svc.status.last_error
        assert svc.status.endpoint.port not in (None, taken)


def test_two_services_never_get_the_same_port(state_dir: Path, services: list[Service]) -> None:
    ports = set()
    for i in range(5):
        spec = {"daemon": {"command": ["sleep", "600"]}, "endpoint": {"port": 1}}
        svc = Service.from_manifest(manifest(f"p{i}", spec), state_dir=state_dir)
        services.append(svc)
        svc.start(timeout=0)
        ports.add(svc.status.endpoint.port)
    assert len(ports) == 5


def test_preferred_then_last_used_port(state_dir: Path, services: list[Service]) -> None:
    free = free_port()
    spec = {
        "daemon": {"command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]},
        "endpoint": {"protocol": "http", "port": free},
    }
    svc = Service.from_manifest(manifest("pref", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20)
    assert svc.status.endpoint.port == free
    assert svc.stop(timeout=10)
    spec2 = {"daemon": spec["daemon"], "endpoint": {"protocol": "http"}}
    svc2 = Service.from_manifest(manifest("pref", spec2), state_dir=state_dir)
    services.append(svc2)
    assert svc2.start(timeout=20)
    assert svc2.status.endpoint.port == free  # the last used one


def test_command_not_found(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(
        manifest("nope", {"daemon": {"command": ["no-such-binary-xyz"]}}), state_dir=state_dir
    )
    services.append(svc)
    assert svc.start(timeout=5) is False
    assert svc.status.state is ServiceState.ERROR
    assert svc.status.last_error == "command not found: no-such-binary-xyz"
    assert svc.status.condition("Ready").reason == "CommandNotFound"  # type: ignore[union-attr]
    svc.reconcile()  # never raises in a caller's loop
    assert svc.status.state is ServiceState.ERROR


def test_missing_working_dir(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(
        manifest("wd", {"daemon": {"command": ["sleep", "1"], "workingDir": "/nonexistent/dir"}}),
        state_dir=state_dir,
    )
    services.append(svc)
    assert not svc.start(timeout=5)
    assert "workingDir /nonexistent/dir does not exist" in svc.status.last_error


def test_crash_on_start_is_never_active(state_dir: Path, services: list[Service]) -> None:
    spec = {
        "daemon": {"command": [PY, "-c", "raise SystemExit('boom')"]},
        "endpoint": {"protocol": "http"},
    }
    svc = Service.from_manifest(manifest("boom", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10) is False
    assert svc.status.state is ServiceState.ERROR
    assert "exited with code 1" in svc.status.last_error
    assert any("boom" in line for line in svc.get_logs())


def test_startup_that_never_becomes_healthy_times_out(
    state_dir: Path, services: list[Service]
) -> None:
    spec = {"daemon": {"command": ["sleep", "600"]}, "endpoint": {"protocol": "http"}}
    svc = Service.from_manifest(manifest("mute", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=0.5) is False
    assert svc.status.state is ServiceState.PENDING_STARTUP
    assert "not ready after 0.5s" in svc.status.last_error


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec"),
        ({"daemon": {"command": ["x"]}, "container": {"image": "x"}}, "spec"),
        ({"daemon": {}}, "daemon"),
        ({"daemon": {"command": []}}, "command"),
        ({"daemon": {"command": ["x"]}, "endpoint": {"port": 70000}}, "port"),
        ({"daemon": {"command": ["x"]}, "endpoint": {"protocol": "ftp"}}, "protocol"),
        ({"daemon": {"command": ["x"]}, "restartPolicy": "Sometimes"}, "restartPolicy"),
        ({"daemon": {"command": ["x"]}, "adminState": "paused"}, "adminState"),
        ({"daemon": {"command": ["x"], "stopSignal": "TERM"}}, "stopSignal"),
        (
            {"daemon": {"command": ["x"]}, "endpoint": {"healthCheck": {"failureThreshold": 0}}},
            "failureThreshold",
        ),
        ({"daemon": {"command": ["x"]}, "bogusField": 1}, "bogusField"),
        ({"daemon": {"python": {"callable": "not a callable"}}}, "callable"),
    ],
)
def test_invalid_manifest_names_the_field(state_dir: Path, spec: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as info:
        Service.from_manifest(manifest("bad", spec), state_dir=state_dir)
    assert field in str(info.value)
    assert not any(state_dir.iterdir()), "a rejected manifest must not leave state behind"


def test_invalid_name_rejected(state_dir: Path) -> None:
    with pytest.raises(ValidationError, match="name"):
        Service.from_manifest(
            manifest("../../etc", {"daemon": {"command": ["x"]}}), state_dir=state_dir
        )


def test_killed_daemon_is_noticed_and_restarted(state_dir: Path, services: list[Service]) -> None:
    spec = {"daemon": {"command": ["sleep", "600"]}, "backoff": {"initialSeconds": 0.1}}
    svc = Service.from_manifest(manifest("victim", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    pid = svc.status.runtime["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: svc.reconcile() is not None and svc.status.state is ServiceState.ERROR)
    assert "SIGKILL" in svc.status.last_error
    wait_for(lambda: svc.reconcile() is not None and svc.status.state is ServiceState.ACTIVE)
    assert svc.status.restarts == 1
    assert svc.status.runtime["pid"] != pid


def test_launch_interrupted_before_pid_file_is_adopted_not_duplicated(
    state_dir: Path, services: list[Service]
) -> None:
    """Steward killed between spawning a daemon and writing its pid file."""
    spec = {"daemon": {"command": ["sleep", "600.125"]}}
    svc = Service.from_manifest(manifest("interrupted", spec), state_dir=state_dir)
    svc.runtime_dir.mkdir(parents=True)
    token = uuid.uuid4().hex  # not a constant: concurrent runs must not adopt each other's
    (svc.runtime_dir / "daemon.starting").write_text(f"{token} {svc.spec_hash}")
    env = {**os.environ, "STEWARD_LAUNCH_ID": token}
    orphan = subprocess.Popen(["sleep", "600.125"], env=env, start_new_session=True)
    try:
        again = Service.from_manifest(manifest("interrupted", spec), state_dir=state_dir)
        services.append(again)
        assert again.start(timeout=5)
        assert again.status.runtime["pid"] == orphan.pid
        assert again.stop(timeout=5)
        assert orphan.wait(timeout=5) is not None
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
