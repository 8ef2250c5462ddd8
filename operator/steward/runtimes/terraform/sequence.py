"""One command sequence at a time per service, in this process and across processes.

A sequence (apply, destroy, a drift check) holds a thread lock and the
workspace's flock. Before it runs, a holder file left by a run that died
with an earlier Steward process is examined: still running means busy, dead
means its evidence is recorded (for breaking its state lock later) and a
stale local lock file is removed. A stop also interrupts a run such an
earlier process left going, as it would interrupt its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict

from steward.runtimes.base import RuntimeFailure
from steward.runtimes.terraform.diag import Reason
from steward.runtimes.terraform.lock import Holder, same_process, stale_local_lock_info
from steward.runtimes.terraform.session import CHECKING, CORRECTING, Session
from steward.runtimes.terraform.workspace import Workspace


class Sequencer:
    """Serialises the service's command sequences and deals with runs of dead processes."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def sequence(self, activity: str, wait: bool = True) -> Iterator[bool]:
        """One command sequence at a time: this process (thread lock) and others (flock)."""
        s = self.s
        if not self._lock.acquire(blocking=wait):
            yield False
            return
        try:
            s.runner.begin()
            fd = s.ws.try_lock()
            if fd is None:
                holder = Holder.load(s.ws.holder_path)
                who = f" (terraform {holder.command}, pid {holder.pid})" if holder else ""
                raise RuntimeFailure(
                    f"another Steward process is running Terraform for this service{who}",
                    reason=Reason.BUSY,
                )
            try:
                self._take_over_from_dead_run()
                with s.state_lock:
                    s.record = s.ws.load()
                    s.activity = activity
                yield True
            finally:
                with s.state_lock:
                    s.activity = None
                Workspace.unlock(fd)
        finally:
            self._lock.release()

    def preempt(self, stopping: bool) -> None:
        """Cancel background work in the way: a drift plan always, a drift correction on stop."""
        activity = self.s.activity
        if activity == CHECKING or (stopping and activity == CORRECTING):
            self.s.runner.cancel(self.s.spec.stop_grace_period_seconds)

    def foreign_holder(self) -> Holder | None:
        """A live run started by another process (e.g. before an operator restart)."""
        holder = Holder.load(self.s.ws.holder_path)
        if holder is None or holder.steward_pid == os.getpid() or not holder.alive():
            return None
        return holder

    def interrupt_foreign(self, grace: float) -> None:
        """Stop a run an earlier (dead) Steward process left going, as our own would be stopped.

        Only the very process recorded (PID and start time) on this host is
        signalled: SIGTERM to its group, SIGKILL after ``grace``.
        """
        holder = self.foreign_holder()
        if holder is None or holder.pid is None or not holder.local:
            return
        if same_process(holder.steward_pid, holder.steward_start):
            return  # its Steward lives: that process owns the run (stop it there)
        self.s.log.line(
            f"--- stop requested: interrupting terraform {holder.command} (pid {holder.pid})"
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(holder.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while holder.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if holder.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(holder.pid, signal.SIGKILL)

    def _take_over_from_dead_run(self) -> None:
        """A holder file left behind: its run is still going (refuse) or died (clean up)."""
        s = self.s
        holder = Holder.load(s.ws.holder_path)
        if holder is None:
            return
        if holder.alive():
            raise RuntimeFailure(
                f"terraform {holder.command} (pid {holder.pid}, started {holder.started_at} on "
                f"{holder.host}) of an earlier Steward process is still running",
                reason=Reason.BUSY,
            )
        s.log.line(
            f"--- terraform {holder.command} (pid {holder.pid}) died before finishing; "
            "its state lock, if any, may be stale"
        )
        rec = s.ws.load()
        rec.dead_holder = holder.describe(alive=False) | {"raw": asdict(holder)}
        s.ws.save(rec)
        info = stale_local_lock_info(s.ws.state_dir)
        if info is not None and s.spec.backend.kind == "local":
            info.unlink(missing_ok=True)
            s.log.line(f"--- removed {info.name} left by the dead run")
        s.ws.holder_path.unlink(missing_ok=True)
