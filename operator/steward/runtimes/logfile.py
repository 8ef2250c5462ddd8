"""A daemon's log file: size-based rotation and tail/follow.

A daemon's stdout/stderr go through a pipe to a small writer process
(``logrelay.py``) that rotates by size as the log grows (``start_relay``).
``rotate_if_needed`` (copy-then-truncate, as logrotate's copytruncate) remains for
logs written straight to the file (Terraform's, a blocking daemon's, and daemons
launched by an earlier Steward).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from steward.runtimes.process import register_child


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` to ``path.1`` .. ``path.N`` when it exceeds ``max_bytes``."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups > 0:
        for i in range(backups - 1, 0, -1):
            src = path.with_name(f"{path.name}.{i}")
            if src.exists():
                src.replace(path.with_name(f"{path.name}.{i + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with open(path, "r+b") as fh:
        fh.truncate(0)
    return True


def tail_lines(path: Path, n: int | None) -> list[str]:
    """The last ``n`` lines (all when None); missing file gives none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            if n is None:
                return [line.rstrip("\n") for line in fh]
            return [line.rstrip("\n") for line in deque(fh, maxlen=n)]
    except FileNotFoundError:
        return []


def follow_lines(
    path: Path,
    tail: int | None,
    keep_going: Callable[[], bool],
    poll: float = 0.1,
) -> Iterator[str]:
    """``tail -F``: the last ``tail`` lines (all when None), then new ones while ``keep_going()``.

    The starting offset is exactly what was read, so no line written meanwhile is
    lost or repeated; a truncation (rotation) restarts from the beginning.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        data = b""
    pos = len(data)
    text = data.decode("utf-8", errors="replace")
    complete, _, buf = text.rpartition("\n")
    lines = complete.split("\n") if complete else []
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    yield from lines
    idle_checks = 0
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < pos:  # rotated (truncated)
            pos = 0
        if size > pos:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            pos += len(chunk)
            buf += chunk.decode("utf-8", errors="replace")
            *new, buf = buf.split("\n")
            yield from new
            idle_checks = 0
            continue
        idle_checks += 1
        if not keep_going() and idle_checks > 1:
            if buf:
                yield buf
            return
        time.sleep(poll)


def open_for_append(path: Path) -> int:
    """An O_APPEND descriptor so truncation by rotation never leaves a hole."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)


RELAY_SCRIPT = Path(__file__).with_name("logrelay.py")


def _relay_args(max_bytes: int, backups: int, mode: int) -> list[str]:
    return [str(max_bytes), str(backups), oct(mode)[2:]]


def start_relay(
    path: Path, max_bytes: int, backups: int, mode: int = 0o640
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the log writer for ``path`` (runtimes/logrelay.py); returns it and the write end
    of its pipe, for the daemon's stdout and stderr (the caller closes it once passed on).

    The writer rotates as the log grows, so the file never exceeds ``max_bytes``, and it
    runs in its own session so it outlives a Steward restart along with the daemon.
    """
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                str(RELAY_SCRIPT),
                str(path),
                *_relay_args(max_bytes, backups, mode),
            ],
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    register_child(proc)
    return proc, w
