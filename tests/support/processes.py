"""The processes the suite starts: the session marker, the leak check, stopping one process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import psutil

# Every process the suite starts inherits this marker, so the leak check can
# find daemons (and their grandchildren) that were re-parented away from us.
SESSION_MARK = f"steward-test-{uuid.uuid4().hex[:12]}"
os.environ["STEWARD_TEST_SESSION"] = SESSION_MARK

# Sandboxed processes get a clean environment (no marker): the leak check also finds
# them by the cgroup parent the sandbox tests use and by the uid range they allocate from.
TEST_CGROUP_PARENT = SESSION_MARK
TEST_UID_SIZE = 4096
TEST_UID_START = 0x70F00000 + int(os.environ.get("STEWARD_TEST_SHARD", "0")) * TEST_UID_SIZE
"""hack/test.sh runs sessions side by side (STEWARD_TEST_SHARD): each allocates sandbox
uids from its own range, so its leak check never counts another session's tenants."""


SHARED_UIDS = os.environ.get("STEWARD_TEST_NO_SANDBOX") != "1"
"""The uid range is the machine's, not this session's: a session that starts no sandbox
(hack/test.sh's tests/unit, run beside the rest) must not take another's for leaks."""


def _sandboxed(p: psutil.Process) -> bool:
    if SHARED_UIDS and TEST_UID_START <= p.uids().real < TEST_UID_START + TEST_UID_SIZE:
        return True
    try:
        with open(f"/proc/{p.pid}/cgroup") as fh:
            return f"/{TEST_CGROUP_PARENT}/" in fh.read()
    except OSError:
        return False


def marked_processes() -> list[psutil.Process]:
    """Live processes this session started (by marker, sandbox cgroup or uid)."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("STEWARD_TEST_SESSION") == SESSION_MARK or _sandboxed(p):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


HUB_SETTLE = 6.0
"""A state directory's log hub ends by itself a few seconds after its last pipe closes
(runtimes/loghub.py IDLE_EXIT): the last tests' hubs get that long before they count."""


def _is_hub(p: psutil.Process) -> bool:
    try:
        return any(part.endswith("loghub.py") for part in p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_leaked() -> list[str]:
    """Kill what marked_processes() finds; one line per process killed."""
    lines = []
    found = marked_processes()
    deadline = time.monotonic() + HUB_SETTLE
    while any(_is_hub(p) for p in found) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = marked_processes()
    for p in found:
        try:
            lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
            p.kill()
        except psutil.NoSuchProcess:
            continue
    return lines


def alive(pid: int) -> bool:
    """The process is running (not gone, not a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: only this process, by its PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
