"""One Terraform command at a time, as a killable child with its own environment.

Every command is a separate child process in its own session (so its
local-exec grandchildren can be killed as a group), with an argv list, an
explicit environment and stdin closed. Output is streamed into the service's
log as it comes (redacted), so a long apply can be followed live.

Before a child starts, who runs it is written to ``holder.json``; it is
removed when the child ends. A holder file left behind means a run died with
its Steward process, and tells the next run whom to check (see terraform.lock).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from steward.runtimes.sandbox import Sandbox
from steward.runtimes.terraform.lock import Holder
from steward.runtimes.terraform.log import TerraformLog

READER_JOIN_SECONDS = 5.0
"""After the command exits, how long a grandchild holding our pipe may delay us."""


@dataclass
class Result:
    """How a command ended. stdout/stderr are raw: redact before showing them."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    pid: int = 0
    cancelled: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.cancelled and not self.timed_out

    @property
    def killed_by(self) -> int | None:
        """The signal number that ended the command, if one did."""
        return -self.exit_code if self.exit_code < 0 else None


@dataclass
class Running:
    """The command in flight: what, which child, since when."""

    command: str
    pid: int
    started_at: datetime
    background: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    kill_at: float | None = None
    cancelled: bool = False


class Runner:
    """Runs a service's Terraform commands one at a time; ``cancel`` may come from any thread."""

    def __init__(
        self,
        log: TerraformLog,
        holder_path: Path,
        redact: Callable[[str], str],
        sandbox: Callable[[], Sandbox | None] = lambda: None,
    ) -> None:
        self.log = log
        self.holder_path = holder_path
        self.redact = redact
        self.sandbox = sandbox
        """The service's sandbox, read per command: its uid/gid (and so every local-exec
        provisioner's), no supplementary groups, umask 0077 (state and plan files 0600)."""
        self._mutex = threading.Lock()
        self._running: Running | None = None
        self._cancelled = False

    # ------------------------------------------------------------ cancellation
    def begin(self) -> None:
        """Start a new sequence of commands: forget an earlier cancel."""
        with self._mutex:
            self._cancelled = False

    @property
    def cancelled(self) -> bool:
        with self._mutex:
            return self._cancelled

    @property
    def running(self) -> Running | None:
        with self._mutex:
            return self._running

    def cancel(self, grace: float) -> Running | None:
        """Stop the current sequence: SIGTERM the command now, SIGKILL its group after ``grace``.

        Terraform treats SIGTERM like Ctrl-C: it stops provisioners, writes the
        state and releases the lock. Returns the command that was interrupted.
        """
        with self._mutex:
            self._cancelled = True
            running = self._running
            if running is None or running.proc is None:
                return None
            running.cancelled = True
            deadline = time.monotonic() + max(0.0, grace)
            running.kill_at = (
                deadline if running.kill_at is None else min(running.kill_at, deadline)
            )
            if grace <= 0:
                _signal_group(running.pid, signal.SIGKILL)
            else:
                _signal(running.proc, signal.SIGTERM)
            return running

    # ------------------------------------------------------------ running
    def run(
        self,
        command: str,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        grace: float,
        log_stdout: bool = True,
        background: bool = False,
    ) -> Result:
        """Run ``argv`` to completion (or until cancelled / ``timeout``)."""
        started = time.monotonic()
        self.log.header(self.redact(" ".join(argv[-_visible_args(argv) :])))
        with self._mutex:
            if self._cancelled:
                self.log.line("--- not started: stop requested")
                return Result(command, -1, "", "", 0.0, cancelled=True)
            Holder.for_command(command, None).save(self.holder_path)
            sandbox = self.sandbox()
            ids: dict[str, Any] = {}
            if sandbox is not None:
                ids = {
                    "user": sandbox.uid,
                    "group": sandbox.gid,
                    "extra_groups": [],
                    "umask": 0o077,
                }
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                    **ids,
                )
            except OSError:
                self.holder_path.unlink(missing_ok=True)
                raise
            self._running = Running(command, proc.pid, datetime.now(UTC), background, proc)
            Holder.for_command(command, proc.pid).save(self.holder_path)
        out: list[str] = []
        err: list[str] = []
        readers = [
            self._reader(proc.stdout, out, log=log_stdout),
            self._reader(proc.stderr, err, log=True),
        ]
        running = self._running
        assert running is not None
        timed_out = False
        deadline = started + timeout
        exited = threading.Event()

        def wait() -> None:  # a blocking waitpid notices the exit at once; the loop keeps time
            proc.wait()
            exited.set()

        threading.Thread(target=wait, name="terraform-wait", daemon=True).start()
        while not exited.wait(0.05):
            now = time.monotonic()
            if now > deadline and not timed_out:
                timed_out = True
                self.log.line(f"--- timeout after {timeout:.0f}s: stopping")
                with self._mutex:
                    running.kill_at = now + grace
                _signal(proc, signal.SIGTERM)
            with self._mutex:
                kill_at = running.kill_at
            if kill_at is not None and now >= kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
        code = proc.returncode
        with self._mutex:
            cancelled = running.cancelled
            self._running = None
        if cancelled or timed_out or code < 0:
            # Terraform stops its provisioners' shells but not their children
            # (`sh -c "sleep 60"` leaves the sleep), and a killed Terraform stops
            # nothing: whatever is left in its group is an orphan of this run.
            _signal_group(proc.pid, signal.SIGKILL)
        for t in readers:
            t.join(READER_JOIN_SECONDS)
        if code >= 0:
            # Ended by itself: it released what it held. Killed: keep the record
            # as evidence that a lock it held may be stale.
            self.holder_path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        self.log.line(f"--- {command}: {how} after {seconds:.2f}s")
        return Result(
            command, code, "".join(out), "".join(err), seconds, proc.pid, cancelled, timed_out
        )

    def _reader(self, stream: IO[bytes] | None, sink: list[str], log: bool) -> threading.Thread:
        def pump() -> None:
            assert stream is not None
            with stream:
                for raw in iter(stream.readline, b""):
                    text = raw.decode("utf-8", errors="replace")
                    sink.append(text)
                    if log:
                        self.log.line(self.redact(text.rstrip("\n")))
            if not log and sink:
                self.log.line("(output captured, not logged)")

        t = threading.Thread(target=pump, name="terraform-output", daemon=True)
        t.start()
        return t


def _visible_args(argv: list[str]) -> int:
    """How much of argv to log: the Terraform arguments, not the interpreter of the bundled one."""
    for i, a in enumerate(argv):
        if not a.startswith("-") and a in _SUBCOMMANDS:
            return len(argv) - i
    return len(argv)


_SUBCOMMANDS = frozenset(
    {"init", "apply", "plan", "destroy", "output", "force-unlock", "fmt", "validate", "version"}
)


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal the command's whole session (it is its own group leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
