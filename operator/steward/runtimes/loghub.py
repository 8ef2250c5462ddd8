"""One log writer for every daemon of a state directory: ``python loghub.py DIR``.

(``python loghub.py --relay FILE MAX_BYTES BACKUPS MODE`` is the same writer for one
pipe on its stdin, for where no hub can be used; it ends at end of input.)

A daemon's stdout and stderr are a pipe whose read end Steward hands to this
process over a Unix socket in DIR (``SCM_RIGHTS``); it writes each pipe to its
file and rotates *before* a write would take the file over its ``maxBytes``. One
process instead of one per daemon: a
Python relay holds ~3.7 MiB of its own, so 1,000 daemons cost 3.7 GiB in relays.

It runs in its own session, so it outlives a Steward restart along with the
daemons, and ends by itself a little after its last pipe closes. A ``flock`` on
DIR/loghub.lock makes it the only one for DIR; the socket lives in DIR (0700,
the operator's), so a tenant's process cannot ask it to write anywhere.

Requests, one per connection, a JSON line (with the pipe attached for ``add``):
``{"op": "add", "path": ..., "maxBytes": ..., "backups": ..., "mode": ...}`` ->
``{"pid": ..., "id": ...}``; ``{"op": "close", "id": ...}`` drains what the pipe
holds, closes it (a process that still writes gets EPIPE) -> ``{"closed": bool}``;
``{"op": "ping"}`` -> ``{"pid": ...}``.

Standard library only, started with ``-I -S``: it starts in milliseconds.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

CHUNK = 65536
IDLE_EXIT = 3.0
"""Seconds without a pipe before the hub ends (the next launch starts another)."""
REQUEST_TIMEOUT = 2.0
SOCKET = "loghub.sock"
LOCK = "loghub.lock"


def short_path(dir_fd: int, name: str) -> str:
    """A path to DIR/name that fits a socket address (108 bytes) however deep DIR is."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def open_rotated(path: str, backups: int, mode: int) -> int:
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


class Stream:
    """One daemon's pipe and its file."""

    def __init__(self, sid: str, src: int, path: str, max_bytes: int, backups: int, mode: int):
        self.sid, self.src, self.path = sid, src, path
        self.max_bytes, self.backups, self.mode = max_bytes, backups, mode
        self.fd: int | None = None
        self.size = 0
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
            self.size = os.fstat(self.fd).st_size
        except OSError:
            self.fd = None  # unwritable: read and drop, never block the daemon

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self.fd is not None:
                if self.size >= self.max_bytes or (
                    self.size > 0 and self.size + len(view) > self.max_bytes
                ):
                    os.close(self.fd)
                    self.fd = None
                    self.fd = open_rotated(self.path, self.backups, self.mode)
                    self.size = 0
                piece = view[: self.max_bytes - self.size]
                written = os.write(self.fd, piece)
                self.size += written
                view = view[written:]
        except OSError:
            pass  # a full disk loses lines, never the daemon

    def drain(self) -> bool:
        """Read what the pipe holds now; False at end of input."""
        while True:
            try:
                data = os.read(self.src, CHUNK)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            except OSError:
                return False
            if not data:
                return False
            self.write(data)

    def close(self) -> None:
        for fd in (self.src, self.fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = None


class Hub:
    def __init__(self, listener: socket.socket | None) -> None:
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        if listener is not None:
            self.sel.register(listener, selectors.EVENT_READ, None)
        self.streams: dict[str, Stream] = {}
        self.counter = 0
        self.idle_since = time.monotonic()

    def run(self, retire: Callable[[], None]) -> None:
        """Serve until idle; then ``retire()`` (no new client finds us) and finish the
        pipes that arrived meanwhile."""
        while self.streams or self.listener is not None:
            timeout = None if self.streams or self.listener is None else IDLE_EXIT
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    self.accept()
                else:
                    stream: Stream = key.data
                    if not stream.drain():
                        self.remove(stream.sid)
            if self.streams or self.listener is None:
                continue
            if time.monotonic() - self.idle_since >= IDLE_EXIT:
                retire()  # the socket is unlinked: who connected before is still queued
                self.listener.setblocking(False)
                while self.accept():
                    pass
                self.sel.unregister(self.listener)
                self.listener.close()
                self.listener = None

    def accept(self) -> bool:
        try:
            conn, _ = self.listener.accept() if self.listener is not None else (None, None)
        except OSError:
            return False
        if conn is None:
            return False
        with conn:
            conn.setblocking(True)
            conn.settimeout(REQUEST_TIMEOUT)
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self.serve(conn)
        return True

    def serve(self, conn: socket.socket) -> None:
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        received = list(fds)
        try:
            request = json.loads(msg)
            if request.get("op") == "add" and received:
                reply = self.add(request, received.pop(0))  # the stream owns it now
            else:
                reply = self.handle(request)
        finally:
            for fd in received:
                os.close(fd)
        conn.sendall(json.dumps(reply).encode() + b"\n")

    def add(self, request: dict[str, Any], src: int) -> dict[str, Any]:
        self.counter += 1
        sid = f"{os.getpid()}-{self.counter}"
        try:
            os.set_blocking(src, False)
            stream = Stream(
                sid,
                src,
                str(request["path"]),
                int(request["maxBytes"]),
                int(request["backups"]),
                int(request["mode"]),
            )
        except BaseException:
            os.close(src)
            raise
        self.streams[sid] = stream
        self.sel.register(src, selectors.EVENT_READ, stream)
        return {"pid": os.getpid(), "id": sid}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "close":
            stream = self.streams.get(str(request.get("id")))
            if stream is None:
                return {"closed": False}
            stream.drain()
            self.remove(stream.sid)
            return {"closed": True}
        return {"pid": os.getpid()}

    def remove(self, sid: str) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(stream.src)
        stream.close()
        if not self.streams:
            self.idle_since = time.monotonic()


def relay(argv: list[str]) -> int:
    """One pipe, on stdin, until its end: every writer gone (the daemon and its children)."""
    path, max_bytes, backups, mode = argv[0], int(argv[1]), int(argv[2]), int(argv[3], 8)
    stream = Stream("relay", 0, path, max_bytes, backups, mode)
    while True:
        try:
            data = os.read(0, CHUNK)
        except InterruptedError:
            continue
        if not data:
            break
        stream.write(data)
    stream.close()
    return 0


def main(argv: list[str]) -> int:
    # Ends when idle, never on a signal meant for Steward: daemons would get EPIPE.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if argv[:1] == ["--relay"]:
        return relay(argv[1:])
    directory = argv[0]
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600, dir_fd=dir_fd)
    deadline = time.monotonic() + 3.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            # Another hub holds it: it serves (we are not needed) or it is ending (wait).
            if _answers(short_path(dir_fd, SOCKET)) or time.monotonic() > deadline:
                return 0
            time.sleep(0.01)
    path = short_path(dir_fd, SOCKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCKET, dir_fd=dir_fd)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(SOCKET, 0o600, dir_fd=dir_fd)
    listener.listen(256)

    def retire() -> None:
        # The socket goes before the lock: a client then starts a new hub, never finds us.
        with contextlib.suppress(OSError):
            os.unlink(SOCKET, dir_fd=dir_fd)
        os.close(lock)

    Hub(listener).run(retire)
    return 0


def _answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        s.sendall(b'{"op": "ping"}')
        return bool(s.recv(256))
    except OSError:
        return False
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
