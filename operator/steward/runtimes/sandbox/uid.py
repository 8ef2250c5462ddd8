"""A stable uid per service from a configured range, like systemd's DynamicUser.

The allocation table (``uids.json``: service key -> uid) lives in the state
directory, read and written under an exclusive flock on ``uids.lock``, so two
Steward processes on one host agree. A uid is never given to a second service
while the first holds it, and uids that name an existing account
(``/etc/passwd``) are skipped. The group id is the same number (a group of one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

DEFAULT_RANGE_START = 0x70000000
"""1879048192: above systemd's DynamicUser range (61184-65519) and the usual /etc/subuid
blocks (100000 + 65536*n), below 2**31 so no tool mistakes it for a negative number."""
DEFAULT_RANGE_SIZE = 65536
TABLE = "uids.json"
LOCK = "uids.lock"


class UidRangeExhausted(Exception):
    """Every uid of the range is taken."""


class UidAllocator:
    """Hands out uids in ``[range_start, range_start + range_size)``, one per service key."""

    def __init__(
        self,
        range_start: int = DEFAULT_RANGE_START,
        range_size: int = DEFAULT_RANGE_SIZE,
        state_dir: Path | str = ".",
    ) -> None:
        if range_start <= 0 or range_size <= 0 or range_start + range_size > 2**31:
            raise ValueError("uid range must be positive and below 2**31")
        self.range_start = range_start
        self.range_size = range_size
        self.state_dir = Path(state_dir)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            table = self._read()
            before = dict(table)
            yield table
            if table != before:
                self._write(table)
        finally:
            os.close(fd)  # releases the flock

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads((self.state_dir / TABLE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}

    def _write(self, table: dict[str, int]) -> None:
        tmp = self.state_dir / f".{TABLE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(table, fh, sort_keys=True)
        tmp.replace(self.state_dir / TABLE)

    def _in_range(self, uid: int) -> bool:
        return self.range_start <= uid < self.range_start + self.range_size

    def allocate(self, key: str) -> int:
        """The service's uid: the one it had, else the lowest free one of the range."""
        with self._locked() as table:
            uid = table.get(key)
            if uid is not None and self._in_range(uid):
                return uid
            taken = set(table.values())
            for candidate in range(self.range_start, self.range_start + self.range_size):
                if candidate in taken or _is_account(candidate):
                    continue
                table[key] = candidate
                return candidate
        raise UidRangeExhausted(
            f"no free uid in {self.range_start}..{self.range_start + self.range_size - 1}"
        )

    def lookup(self, key: str) -> int | None:
        with self._locked() as table:
            return table.get(key)

    def release(self, key: str) -> int | None:
        """Forget a service's uid (when the service is deleted); the uid it had, if any."""
        with self._locked() as table:
            return table.pop(key, None)

    def allocations(self) -> dict[str, int]:
        with self._locked() as table:
            return dict(table)


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
