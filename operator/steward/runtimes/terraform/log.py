"""The service's Terraform log: every command's output, appended, redacted, rotated by size."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from steward.runtimes.logfile import follow_lines, rotate_if_needed, tail_lines

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 2


class TerraformLog:
    """Append-only text log shared by the reader threads of one runner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def header(self, what: str) -> None:
        """Mark the start of a command (and rotate between commands, never inside one)."""
        with self._lock:
            rotate_if_needed(self.path, MAX_BYTES, BACKUPS)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        self.line(f"=== {stamp} terraform {what}")

    def line(self, text: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")

    def lines(self, tail: int | None, follow: bool, busy: Callable[[], bool]) -> Iterator[str]:
        """Oldest first; ``follow`` keeps yielding while a command runs."""
        if not follow:
            yield from tail_lines(self.path, tail)
            return
        yield from follow_lines(self.path, tail, busy)
