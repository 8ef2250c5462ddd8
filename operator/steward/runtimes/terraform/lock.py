"""Who holds a service's Terraform run, and whether a stuck state lock may be broken.

The worst Terraform-operator failure is a state lock left by a run that was
killed: every later run fails until a human runs ``force-unlock``. Steward
records the holder of each run (PID *and* process start time *and* host)
before the command starts, so the next run can prove the holder dead
(PID gone, or reused by a process with another start time) and only then
break the lock. A holder that is alive, or on another host, is never
second-guessed: it is reported in the status instead.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from steward.runtimes.base import FencedHolders
from steward.runtimes.sandbox.fs import write_private
from steward.runtimes.terraform.diag import LockInfo

START_TIME_TOLERANCE = 0.05
LOCK_CLOCK_SLACK = timedelta(seconds=5)


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@functools.lru_cache(maxsize=1)
def _identity(pid: int) -> tuple[str, str, float | None]:
    """This process's host, user and start time: asked once per process, not per command."""
    return socket.gethostname(), _user(), _start_time(pid)


@dataclass(frozen=True)
class Holder:
    """A run: the Terraform child (once started) and the Steward process that started it."""

    command: str
    host: str
    user: str
    started_at: str
    steward_pid: int
    steward_start: float | None
    pid: int | None = None
    pid_start: float | None = None

    @classmethod
    def for_command(cls, command: str, pid: int | None) -> Holder:
        me = os.getpid()
        host, user, start = _identity(me)
        return cls(
            command=command,
            host=host,
            user=user,
            started_at=datetime.now(UTC).isoformat(),
            steward_pid=me,
            steward_start=start,
            pid=pid,
            pid_start=_start_time(pid) if pid else None,
        )

    # ------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Holder | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------ liveness
    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """False only when provably dead; a holder on another host counts as alive."""
        if not self.local:
            return True
        if self.pid is not None:
            return same_process(self.pid, self.pid_start)
        # The child's PID never got recorded: only its parent can vouch for it.
        return same_process(self.steward_pid, self.steward_start)

    def owns(self, lock: LockInfo) -> bool:
        """Could ``lock`` be the one this run took? (Same user@host, created after it began.)

        Backends that do not say who holds the lock (http) leave only the
        evidence that this service's last run died holding the state.
        """
        if not lock.who and not lock.created:
            return True
        if lock.who and lock.who != f"{self.user}@{self.host}":
            return False
        created = _parse_lock_time(lock.created)
        began = _parse_iso(self.started_at)
        if created is None or began is None:
            return False
        return created >= began - LOCK_CLOCK_SLACK

    def describe(self, alive: bool | None = None) -> dict[str, Any]:
        """For status: who, where, since when, and whether it still runs."""
        out: dict[str, Any] = {
            "command": self.command,
            "pid": self.pid,
            "stewardPid": self.steward_pid,
            "host": self.host,
            "startedAt": self.started_at,
        }
        out["alive"] = self.alive() if alive is None else alive
        return out


def same_process(pid: int, start: float | None) -> bool:
    """Is ``pid`` alive and still the process that started at ``start`` (not a reused PID)?"""
    now_start = _start_time(pid)
    if now_start is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return start is None or abs(now_start - start) <= START_TIME_TOLERANCE


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_lock_time(text: str) -> datetime | None:
    """Terraform prints Go's time format: ``2026-11-26 05:45:31.119976987 +0000 UTC``."""
    parts = text.split()
    if len(parts) < 3:
        return _parse_iso(text)
    date, clock, offset = parts[0], parts[1], parts[2]
    if "." in clock:
        whole, frac = clock.split(".", 1)
        clock = f"{whole}.{frac[:6]}"
    try:
        return datetime.strptime(f"{date} {clock} {offset}", "%Y-%m-%d %H:%M:%S.%f %z")
    except ValueError:
        try:
            return datetime.strptime(f"{date} {clock} {offset}", "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            return None


def stale_local_lock_info(state_dir: Path) -> Path | None:
    """The local backend's ``.terraform.tfstate.lock.info`` if one was left behind.

    The local backend locks with fcntl, which dies with the process; the info
    file stays. Harmless to Terraform, but confusing to a human: removed once
    its holder is proven dead.
    """
    path = state_dir / ".terraform.tfstate.lock.info"
    return path if path.exists() else None


def taken_by_fenced(lock: LockInfo, fenced: FencedHolders | None) -> bool:
    """Taken on one of the fenced hosts (``Who`` is ``user@host``) before this host's
    binding began, by more than the clocks' slack: its run was stopped by the fence."""
    if fenced is None or "@" not in lock.who:
        return False
    host = lock.who.rsplit("@", 1)[1]
    created = _parse_lock_time(lock.created)
    return (
        host in fenced.hosts and created is not None and created < fenced.before - LOCK_CLOCK_SLACK
    )
