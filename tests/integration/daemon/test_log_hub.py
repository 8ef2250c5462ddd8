"""The state directory's one log writer (runtimes/loghub.py), on real daemons and pipes."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from steward import Service
from steward.runtimes.loghub import IDLE_EXIT
from steward.runtimes.process import ProcessRecord
from tests.support.manifests import manifest
from tests.support.processes import TEST_UID_START
from tests.support.waits import wait_fast as wait_for

PY = sys.executable
TICKER = (
    "import time\nfor i in range(100000):\n    print(f'tick {i}', flush=True); time.sleep(0.02)\n"
)


def ticker(name: str) -> dict:  # type: ignore[type-arg]
    return manifest(name, {"daemon": {"command": [PY, "-u", "-c", TICKER]}})


def record(svc: Service) -> ProcessRecord:
    rec = ProcessRecord.load(svc.runtime_dir / "daemon.pid")
    assert rec is not None
    return rec


def hub_pid(state_dir: Path) -> int | None:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(c.endswith("loghub.py") for c in cmd) and cmd[-1] == str(state_dir / "loghub"):
            return p.pid
    return None


def test_every_daemon_of_a_state_dir_shares_one_writer(
    state_dir: Path, services: list[Service]
) -> None:
    svcs = [Service.from_manifest(ticker(f"t{i}"), state_dir=state_dir) for i in range(5)]
    services.extend(svcs)
    for svc in svcs:
        assert svc.start(timeout=10)
    writers = {record(svc).relay_pid for svc in svcs}
    assert len(writers) == 1, writers  # one process for five daemons, not five
    assert writers == {hub_pid(state_dir)}
    assert all(record(svc).relay_stream for svc in svcs)
    for svc in svcs:
        log = svc.runtime_dir / "daemon.log"
        wait_for(lambda log=log: "tick 5" in log.read_text() if log.exists() else False)  # type: ignore[misc]
    # Nothing else of Steward's reads the pipes: no per-daemon relay process exists.
    relays = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "--relay" in (p.info["cmdline"] or [])
        and str(state_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert relays == []


def test_the_writer_outlives_steward_and_the_stop_closes_its_pipe(
    state_dir: Path, services: list[Service]
) -> None:
    first = Service.from_manifest(ticker("adopted"), state_dir=state_dir)
    assert first.start(timeout=10)
    hub = record(first).relay_pid
    del first  # Steward goes away; the daemon and its writer stay
    log = state_dir / "services" / "default" / "adopted" / "runtime" / "daemon.log"
    size = log.stat().st_size
    wait_for(lambda: log.stat().st_size > size)  # still written with nobody of ours looking
    again = Service.from_manifest(ticker("adopted"), state_dir=state_dir)
    services.append(again)
    again.reconcile()
    assert record(again).relay_pid == hub
    assert again.stop(timeout=10)
    size = log.stat().st_size
    time.sleep(0.3)
    assert log.stat().st_size == size  # the stream is closed: nothing more arrives
    assert "tick" in log.read_text().splitlines()[-1]  # and the last line was written whole
    # With its last pipe gone the hub ends by itself.
    wait_for(
        lambda: not psutil.pid_exists(hub) or psutil.Process(hub).status() == "zombie",
        timeout=IDLE_EXIT + 5,
    )


def test_a_deep_state_dir_still_gets_the_hub(tmp_path: Path, services: list[Service]) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 6) / "state"
    deep.mkdir(parents=True)
    assert len(str(deep / "loghub" / "loghub.sock")) > 108  # more than a socket address holds
    svc = Service.from_manifest(ticker("deep"), state_dir=deep)
    services.append(svc)
    assert svc.start(timeout=10)
    assert record(svc).relay_stream


def test_a_hub_dir_others_can_enter_is_not_used(state_dir: Path, services: list[Service]) -> None:
    (state_dir / "loghub").mkdir(mode=0o755)
    (state_dir / "loghub").chmod(0o755)
    svc = Service.from_manifest(ticker("own"), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    rec = record(svc)
    assert rec.relay_stream == "" and rec.relay_pid  # a writer of its own instead
    log = svc.runtime_dir / "daemon.log"
    wait_for(lambda: "tick 3" in log.read_text() if log.exists() else False)


def _connect_as_another_uid(address: str) -> int:
    """0: refused (EACCES); 3: connected; 4: another error."""
    pid = os.fork()
    if pid == 0:  # the child: become an unprivileged uid and try
        code = 4
        try:
            os.setgroups([])
            os.setgid(TEST_UID_START)
            os.setuid(TEST_UID_START)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(address)
                code = 3
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_another_uid_cannot_reach_the_hub(services: list[Service]) -> None:
    """The attack: a tenant's process asks the hub (root) to write a file of its choosing."""
    root = Path(tempfile.mkdtemp(prefix="steward-hub-"))
    try:
        root.chmod(0o755)  # every directory above the hub's open to all
        state = root / "state"
        state.mkdir(mode=0o755)
        svc = Service.from_manifest(ticker("guarded"), state_dir=state)
        services.append(svc)
        assert svc.start(timeout=10)
        hub_dir = state / "loghub"
        address = str(hub_dir / "loghub.sock")
        assert _connect_as_another_uid(address) == 0
        # The check can fail: opened up, the same attempt gets through.
        hub_dir.chmod(0o755)
        os.chmod(address, 0o666)
        assert _connect_as_another_uid(address) == 3
        hub_dir.chmod(0o700)
        assert svc.stop(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)
