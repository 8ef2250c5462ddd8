"""The fence helper: stops a host's AfterFencing services when its agent stopped renewing.

The agent stops them itself when its Lease renewals fail (``AgentController``); this small
process does it when the agent cannot: killed, hung, SIGSTOPped (medik8s' self-fencing, with a
watchdog outside the agent). It shares nothing with the agent but two files in
``<state-dir>/agent/`` (mode 0600, in the agent's 0700 state directory):

* ``renewed``: ``time.monotonic()`` at the *start* of the agent's last renewal that succeeded
  (CLOCK_MONOTONIC is one clock for every process of the host; counting from the start makes
  the host's deadline never later than the controller's, which counts from when it saw it);
* ``fence.json``: ``{key: {fenceAfter, pid, created, container}}``, what to stop and when.

It polls both every ``POLL`` s, kills what is due (a daemon by PID, checked against its start
time so a reused PID is never hit; a container through the Docker engine), and exits once its
agent is gone and nothing is left to fence, or a newer agent renews again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from steward.runtimes.sandbox.fs import write_private

log = logging.getLogger("steward.fence")

RENEWED = "renewed"
TARGETS = "fence.json"
POLL = 0.2


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, text)


def write_renewed(directory: Path, started: float) -> None:
    _write(directory / RENEWED, repr(started))


def read_renewed(directory: Path) -> float | None:
    try:
        return float((directory / RENEWED).read_text())
    except (OSError, ValueError):
        return None


def write_targets(directory: Path, targets: dict[str, dict[str, Any]]) -> None:
    _write(directory / TARGETS, json.dumps(targets, sort_keys=True))


def read_targets(directory: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((directory / TARGETS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def target(fence_after: float, runtime: dict[str, Any]) -> dict[str, Any]:
    """One service's entry, from its status.runtime (pid or containerId)."""
    out: dict[str, Any] = {"fenceAfter": fence_after}
    pid = runtime.get("pid")
    if isinstance(pid, int) and pid > 0:
        with contextlib.suppress(psutil.Error):
            out["pid"], out["created"] = pid, psutil.Process(pid).create_time()
    container = runtime.get("containerId")
    if isinstance(container, str) and container:
        out["container"] = container
    return out


def kill(entry: dict[str, Any]) -> bool:
    """Stop one target now; True when nothing of it runs any more."""
    done = True
    pid, created = entry.get("pid"), entry.get("created")
    if isinstance(pid, int):
        try:
            proc = psutil.Process(pid)
            if created is None or abs(proc.create_time() - float(created)) < 0.01:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else proc.kill()
                done = not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    container = entry.get("container")
    if isinstance(container, str) and container:
        result = subprocess.run(
            ["docker", "kill", container], capture_output=True, text=True, timeout=20, check=False
        )
        gone = (
            result.returncode == 0
            or "is not running" in result.stderr
            or ("No such container" in result.stderr)
        )
        done = done and gone
    return done


def run(directory: Path, agent_pid: int) -> int:
    """The helper's loop (``python -m steward.k8s.fence DIR AGENT_PID``)."""
    fenced: set[str] = set()
    baseline = read_renewed(directory)
    while True:
        renewed = read_renewed(directory)
        targets = read_targets(directory)
        agent_alive = psutil.pid_exists(agent_pid)
        now = time.monotonic()
        if renewed is not None and renewed != baseline:
            fenced.clear()  # renewals came back: what runs now was started after them
            baseline = renewed
            if not agent_alive:
                return 0  # a newer agent renews (and has its own helper)
        pending = False
        for key, entry in targets.items():
            if key in fenced:
                continue
            after = float(entry.get("fenceAfter") or 0)
            if renewed is None or now - renewed < after:
                pending = True
                continue
            if kill(entry):
                fenced.add(key)
                log.warning("%s fenced: no Lease renewal for %.1f s", key, now - renewed)
            else:
                pending = True
        if not agent_alive and not pending:
            return 0
        time.sleep(POLL)


def spawn(directory: Path) -> int:
    """Start the helper for this agent, in its own session (the agent's death spares it)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_file = os.open(directory / "fence.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steward.k8s.fence", str(directory), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_file)
    return proc.pid


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(run(Path(sys.argv[1]), int(sys.argv[2])))
