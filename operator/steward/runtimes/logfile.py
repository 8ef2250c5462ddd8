"""A daemon's log file: size-based rotation and tail/follow.

A daemon's stdout/stderr go through a pipe to a writer that rotates by size as
the log grows: the state directory's one log hub (``loghub.py``, ``hub_attach``),
or, where that cannot be used, a writer process of its own (``loghub.py --relay``,
``start_relay``). The daemon is spawned first with the pipe's write end and the read end
is handed over after, so a hub (or relay) that has to start costs the daemon nothing:
what it writes meanwhile waits in the pipe.
``rotate_if_needed`` (copy-then-truncate, as logrotate's copytruncate) remains for
logs written straight to the file (Terraform's, a blocking daemon's, and daemons
launched by an earlier Steward).
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.runtimes import loghub
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


def previous_log(path: Path) -> Path:
    """Where the run before the current one left its log (``daemon.log`` -> ``daemon.previous.log``)."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def begin_run(path: Path) -> None:
    """A new run starts a new log; the last run's becomes the previous one (kubelet keeps
    one dead container's log for ``kubectl logs --previous``). A rename: a writer of the
    last run still draining keeps writing into the file it belongs to."""
    try:
        if path.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    path.replace(previous_log(path))


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


HUB_SCRIPT = Path(loghub.__file__)
"""The log writer: the hub, and with ``--relay`` the one-pipe fallback."""


def _relay_args(max_bytes: int, backups: int, mode: int) -> list[str]:
    return [str(max_bytes), str(backups), oct(mode)[2:]]


def start_relay(
    path: Path, r: int, max_bytes: int, backups: int, mode: int = 0o640
) -> subprocess.Popen[bytes]:
    """Start a writer of its own for ``path`` (``loghub.py --relay``) reading the pipe's read
    end ``r`` (the caller closes its copy).

    The writer rotates as the log grows, so the file never exceeds ``max_bytes``, and it
    runs in its own session so it outlives a Steward restart along with the daemon.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            str(HUB_SCRIPT),
            "--relay",
            str(path),
            *_relay_args(max_bytes, backups, mode),
        ],
        stdin=r,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    register_child(proc)
    return proc


HUB_START_SECONDS = 3.0
"""How long a launch waits for a hub it started to answer before using a relay of its own."""
_HUB_LOCK = threading.Lock()
_HUBS: list[subprocess.Popen[bytes]] = []
"""Hubs this process started (reaped when they end)."""


@dataclass(frozen=True)
class HubStream:
    """A daemon's pipe, held by the log hub ``pid`` under ``sid``."""

    pid: int
    sid: str


def hub_attach(
    hub_dir: Path, path: Path, r: int, max_bytes: int, backups: int, mode: int = 0o640
) -> HubStream | None:
    """Hand the pipe's read end ``r`` to ``hub_dir``'s log hub (starting it when none runs;
    the caller closes its copy). None: no hub can be used here; the caller starts a relay
    of its own on the same pipe."""
    request = {
        "op": "add",
        "path": str(path),
        "maxBytes": max_bytes,
        "backups": backups,
        "mode": mode,
    }
    reply = _hub_request(hub_dir, request, fd=r, start=True)
    if reply is None or "id" not in reply:
        return None
    return HubStream(int(reply["pid"]), str(reply["id"]))


def hub_close(hub_dir: Path, sid: str) -> bool:
    """Have the hub write what the pipe holds and let it go (a writer left gets EPIPE).
    False: no hub holds it (it ended with its last pipe, or was killed)."""
    reply = _hub_request(hub_dir, {"op": "close", "id": sid}, start=False)
    return bool(reply and reply.get("closed"))


def _hub_request(
    hub_dir: Path, request: dict[str, Any], fd: int | None = None, start: bool = False
) -> dict[str, Any] | None:
    try:
        hub_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = hub_dir.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None  # not ours alone: a socket there could be anyone's
        dir_fd = os.open(hub_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        address = loghub.short_path(dir_fd, loghub.SOCKET)
        deadline = time.monotonic() + HUB_START_SECONDS
        started = False
        while True:
            try:
                return _exchange(address, request, fd)
            except (OSError, ValueError):
                if not start or time.monotonic() > deadline:
                    return None
            if not started:
                started = _start_hub(hub_dir)
                if not started:
                    return None
            time.sleep(0.005)
    finally:
        os.close(dir_fd)


def _exchange(address: str, request: dict[str, Any], fd: int | None) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HUB_START_SECONDS)
        sock.connect(address)
        payload = json.dumps(request).encode()
        if fd is None:
            sock.sendall(payload)
        else:
            sock.sendmsg(
                [payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            )
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ValueError("the log hub closed the connection")
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def _start_hub(hub_dir: Path) -> bool:
    with _HUB_LOCK:
        _HUBS[:] = [h for h in _HUBS if h.poll() is None]
        try:
            hub = subprocess.Popen(
                [sys.executable, "-I", "-S", str(HUB_SCRIPT), str(hub_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives a Steward restart, as the daemons do
                close_fds=True,
            )
        except OSError:
            return False
        _HUBS.append(hub)
        return True
