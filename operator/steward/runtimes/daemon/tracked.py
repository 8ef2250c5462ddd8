"""A daemon this runtime knows is running, and the cheap way to ask whether it still is.

Re-reading the pid file and asking psutil about /proc on every reconcile is
most of a steady-state reconcile's cost. Once a daemon is known (started,
adopted, or first observed), its record is kept in memory with a handle that
answers "still running?" in one syscall: ``Popen.poll()`` for our own child
(it also reaps it), a pidfd for a process an earlier Steward started. The exit
watch the engine waits on is a pidfd of its own: one descriptor per daemon in the
steady state for a child (the engine's), two for an adopted daemon.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from steward.runtimes.exits import PidfdWatch, fd_readable, pidfd_open
from steward.runtimes.process import ProcessRecord, live_process
from steward.runtimes.sandbox.cgroups import Cgroup


@dataclass
class Tracked:
    record: ProcessRecord
    cgroup: Cgroup | None
    details: dict[str, Any]
    """``pid`` and the sandbox details: constant while the process runs."""
    proc: subprocess.Popen[bytes] | None
    pidfd: int | None
    """Only for a process that is not our child (ours: ``proc.poll()`` tells)."""

    def alive(self) -> bool:
        """Still the process the record describes, and not exited (never blocks)."""
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pidfd is not None and not fd_readable(self.pidfd)

    @property
    def watchable(self) -> bool:
        """:meth:`watch` gives a pidfd (the kernel has pidfds, and we hold the process)."""
        return hasattr(os, "pidfd_open") and (self.proc is not None or self.pidfd is not None)

    def watch(self) -> PidfdWatch | None:
        """A pidfd of its own for the caller (closing it leaves ours open)."""
        try:
            if self.proc is None:
                return PidfdWatch(os.dup(self.pidfd)) if self.pidfd is not None else None
            fd = pidfd_open(self.proc.pid)
            if fd is None:
                return None
            if self.proc.returncode is not None:
                # Reaped before the pidfd was opened: the pid may be another's by now.
                # The end has happened, so the watch is one that has fired already.
                os.close(fd)
                return PidfdWatch(os.eventfd(1))
            return PidfdWatch(fd)
        except OSError:
            return None

    def close(self) -> None:
        fd, self.pidfd = self.pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def track(
    record: ProcessRecord,
    cgroup: Cgroup | None,
    details: dict[str, Any],
    proc: subprocess.Popen[bytes] | None,
) -> Tracked | None:
    """Track the process of ``record``; None when nothing cheap can tell its end.

    The pidfd is opened first and the process checked after: if the pid was
    reused in between, the check sees the other process and nothing is tracked.
    """
    if proc is not None:
        return Tracked(record, cgroup, details, proc, None)
    fd = pidfd_open(record.pid)
    if fd is None:
        return None
    if live_process(record) is None:
        os.close(fd)
        return None
    return Tracked(record, cgroup, details, None, fd)
