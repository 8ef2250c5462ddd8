"""A daemon's log writer: ``python logrelay.py FILE MAX_BYTES BACKUPS MODE`` reads its stdin.

The daemon's stdout and stderr are a pipe to this small process (one per daemon,
in its own session, so it survives a Steward restart as the daemon does). It
rotates *before* a write would take the file over MAX_BYTES, so the file never
exceeds it however fast the daemon writes; ``FILE.1`` .. ``FILE.N`` are kept.
It exits at end of input (every writer gone: the daemon and its children ended).

Run as a script, standard library only (like terraform/bundled.py): it starts in
a few milliseconds and holds a few MiB.
"""

from __future__ import annotations

import os
import signal
import sys

CHUNK = 65536


def rotate(path: str, backups: int, mode: int) -> int:
    if backups > 0:
        for i in range(backups - 1, 0, -1):
            src = f"{path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{path}.{i + 1}")
        if os.path.exists(path):
            os.replace(path, f"{path}.1")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return os.open(path, flags, mode)


def relay(src: int, path: str, max_bytes: int, backups: int, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    size = os.fstat(fd).st_size
    while True:
        try:
            data = os.read(src, CHUNK)
        except InterruptedError:
            continue
        if not data:
            break
        view = memoryview(data)
        while view:
            if size >= max_bytes or (size > 0 and size + len(view) > max_bytes):
                os.close(fd)
                fd = rotate(path, backups, mode)
                size = 0
            room = max_bytes - size
            piece = view[:room]
            written = os.write(fd, piece)
            size += written
            view = view[written:]
    os.close(fd)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stops at EOF, after the last line
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, max_bytes, backups, mode = argv[0], int(argv[1]), int(argv[2]), int(argv[3], 8)
    relay(0, path, max_bytes, backups, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
