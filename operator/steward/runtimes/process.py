"""Process bookkeeping for daemons: identity records, reaping and tree kills.

A PID alone is not an identity: PIDs are reused. A daemon is recognised by
its PID *and* its start time *and* its argv, all recorded at spawn time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import InitVar, asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from steward.runtimes.sandbox.fs import write_private

# Children spawned by this Python process, so whichever Service object
# observes them can reap the exit status (no zombies, real exit codes).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def argv_hash(argv: list[str]) -> str:
    """The identity of an argv without its text (an expanded argv may hold Secret values)."""
    return hashlib.sha256(b"\0".join(a.encode() for a in argv)).hexdigest()


@dataclass
class ProcessRecord:
    """What the pid file holds (mode 0600, and never the expanded argv: only its hash)."""

    pid: int
    create_time: float
    cmdline_hash: str = ""
    spec_hash: str = ""
    started_at: float = 0.0
    uid: int | None = None
    """The sandbox uid it runs as; None: the caller's."""
    cgroup: dict[str, Any] = field(default_factory=dict)
    """``{"version": 1|2, "dirs": {...}}`` when it runs in a cgroup of its own."""
    relay_pid: int = 0
    relay_create_time: float = 0.0
    """The log writer reading its stdout/stderr (0: none): a relay of its own, or the hub."""
    relay_stream: str = ""
    """The stream id when the state directory's log hub holds the pipe ("": a relay)."""
    cmdline: InitVar[list[str] | None] = None
    """The argv itself: only its hash is kept (as the record of an earlier Steward is read)."""

    def __post_init__(self, cmdline: list[str] | None) -> None:
        if cmdline is not None:
            self.cmdline_hash = argv_hash(cmdline)

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            return cls(**json.loads(path.read_text()))  # an earlier Steward's argv: hashed
        except (OSError, ValueError, TypeError):
            return None


def register_child(proc: subprocess.Popen[bytes]) -> None:
    _CHILDREN[proc.pid] = proc


def reap(pid: int) -> int | None:
    """Exit code if ``pid`` is our child and has exited (reaping it), else None."""
    proc = _CHILDREN.get(pid)
    if proc is None:
        return None
    code = proc.poll()
    if code is None:
        return None
    # Popen reports death by signal N as -N; report 128+N as shells and Kubernetes do.
    return 128 - code if code < 0 else code


def forget(pid: int) -> None:
    """Drop a reaped child once its exit has been recorded elsewhere."""
    _CHILDREN.pop(pid, None)


def is_our_child(pid: int) -> bool:
    return pid in _CHILDREN


def child(pid: int) -> subprocess.Popen[bytes] | None:
    """The Popen of ``pid`` if this Python process spawned it (and it is not forgotten)."""
    return _CHILDREN.get(pid)


def live_process(record: ProcessRecord) -> psutil.Process | None:
    """The process the record describes, if it is still that very process and alive."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.05:
            return None  # PID reused by another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _proc_stats() -> list[tuple[int, int, int]]:
    """(pid, ppid, session) of every process, one read of ``/proc/PID/stat`` each: a stop
    looks at every process on the host twice, and psutil's iteration costs several times
    this, which made stopping 1,000 daemons quadratic in practice (a minute and more)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
            # After the command in parentheses (which may hold anything): state ppid pgrp sid
            fields = data[data.rindex(b")") + 2 :].split()
            out.append((int(name), int(fields[1]), int(fields[3])))
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class _Scans:
    """One scan of /proc serves every thread that asked while it waited for it."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    done: int = 0
    running: bool = False
    result: list[tuple[int, int, int]] = field(default_factory=list)

    def stats(self) -> list[tuple[int, int, int]]:
        """A scan that began after this call (never an older one): as fresh as a scan of
        one's own, but 32 threads stopping daemons at once share one instead of 32."""
        with self.cond:
            wanted = self.done + (2 if self.running else 1)
            while self.done < wanted:
                if self.running:
                    self.cond.wait()
                    continue
                self.running = True
                self.cond.release()
                try:
                    result = _proc_stats()
                finally:
                    self.cond.acquire()
                    self.running = False
                    self.cond.notify_all()
                self.done += 1
                self.result = result
            return self.result


_SCANS = _Scans()


def _processes(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found.append(psutil.Process(pid))
    return found


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and every descendant (even those that left its process group)."""
    if not proc.is_running():
        return []
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in _SCANS.stats():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [proc.pid]
    while todo:
        kids = children.get(todo.pop(), [])
        tree += kids
        todo += kids
    return [proc, *_processes(tree)]


def session_members(leader: int) -> list[psutil.Process]:
    """Processes in ``leader``'s session other than the leader (below it or not)."""
    return _processes([pid for pid, _, sid in _SCANS.stats() if sid == leader and pid != leader])


def signal_tree(root: psutil.Process, sig: int, members: list[psutil.Process]) -> None:
    """Signal the root's process group once, then members that left the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root.pid, sig)
    for p in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if os.getpgid(p.pid) != root.pid:
                p.send_signal(sig)


def terminate_tree(root: psutil.Process, sig: int, grace: float) -> bool:
    """``sig`` to the whole tree, SIGKILL what is left after ``grace``; True if it had to kill."""
    members = process_tree(root)
    if not members:
        return False
    signal_tree(root, sig, members)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(root.pid)
        if not any(_alive(p) for p in members):
            return False
        time.sleep(0.02)
    # Late-born grandchildren too.
    members = list({p.pid: p for p in members + process_tree(root)}.values())
    signal_tree(root, signal.SIGKILL, members)
    end = time.monotonic() + 5
    while time.monotonic() < end and any(_alive(p) for p in members):
        reap(root.pid)
        time.sleep(0.02)
    reap(root.pid)
    return True


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def signal_number(name: str) -> int:
    """SIGTERM -> 15; ValueError names the bad signal."""
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def describe_exit(code: int | None, unknown: str = "exited (exit code unknown)") -> str:
    """`exited with code 1` or `killed by SIGKILL (exit code 137)` (shell/kubelet convention)."""
    if code is None:
        return unknown
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(code - 128).name} (exit code {code})"
    return f"exited with code {code}"
