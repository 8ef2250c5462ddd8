"""The service's Terraform log: every command's output, appended, redacted, rotated by size."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from steward.runtimes.logfile import follow_lines, rotate_if_needed, tail_lines

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 2


class TerraformLog:
    """Append-only text log shared by the reader threads of one runner.

    The file stays open between lines (line-buffered, so a follower sees each line
    at once) and is reopened at the next command's header, after a rotation: an
    open and a mkdir per output line cost more than the line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: TextIO | None = None

    def header(self, what: str) -> None:
        """Mark the start of a command (and rotate between commands, never inside one)."""
        with self._lock:
            self._close()
            rotate_if_needed(self.path, MAX_BYTES, BACKUPS)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        self.line(f"=== {stamp} terraform {what}")

    def line(self, text: str) -> None:
        with self._lock:
            fh = self._fh
            if fh is None or fh.closed:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fh = self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            fh.write(text + "\n")

    def close(self) -> None:
        """Release the file (it is reopened by the next line)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def lines(self, tail: int | None, follow: bool, busy: Callable[[], bool]) -> Iterator[str]:
        """Oldest first; ``follow`` keeps yielding while a command runs."""
        if not follow:
            yield from tail_lines(self.path, tail)
            return
        yield from follow_lines(self.path, tail, busy)
