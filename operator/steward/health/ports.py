"""Port choice for endpoints: preferred, else last used, else a free one.

Two services must never pick the same port in the window between choosing
it and the process binding it, so every choice is recorded as a claim in a
registry directory, under a file lock, until the service releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

STALE_CLAIM_SECONDS = 120.0


class PortUnavailable(Exception):
    """The port cannot be used; the message says which and why."""


def port_available(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could bind ``host:port`` now (SO_REUSEADDR, as servers do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _os_free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PortRegistry:
    """Claims on ports shared by every Service using the same state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _claim_path(self, host: str, port: int) -> Path:
        return self.root / f"{host.replace(':', '_')}-{port}.json"

    def _owner(self, host: str, port: int) -> tuple[str, float] | None:
        try:
            data = json.loads(self._claim_path(host, port).read_text())
            return str(data["owner"]), float(data["at"])
        except (OSError, ValueError, KeyError):
            return None

    def _usable(self, owner: str, host: str, port: int) -> bool:
        claim = self._owner(host, port)
        # Another service's claim is honoured unless it is old and nothing listens.
        if claim is not None and claim[0] != owner and time.time() - claim[1] < STALE_CLAIM_SECONDS:
            return False
        return port_available(port, host)

    def choose(
        self,
        owner: str,
        host: str,
        preferred: int | None,
        last_used: int | None,
        allocate: bool,
    ) -> int:
        """Pick and claim a port for ``owner``; PortUnavailable if none may be used."""
        bind_host = "127.0.0.1" if host == "localhost" else host
        with self._locked():
            if preferred:
                if self._usable(owner, bind_host, preferred):
                    self._write(owner, bind_host, preferred)
                    return preferred
                if not allocate:
                    raise PortUnavailable(
                        f"port {preferred} on {bind_host} is already in use and allocatePort is false"
                    )
            if last_used and last_used != preferred and self._usable(owner, bind_host, last_used):
                self._write(owner, bind_host, last_used)
                return last_used
            if not allocate and last_used:
                raise PortUnavailable(
                    f"port {last_used} on {bind_host} is already in use and allocatePort is false"
                )
            for _ in range(100):
                port = _os_free_port(bind_host)
                if self._usable(owner, bind_host, port):
                    self._write(owner, bind_host, port)
                    return port
        raise PortUnavailable(f"no free port found on {bind_host}")

    def _write(self, owner: str, host: str, port: int) -> None:
        path = self._claim_path(host, port)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"owner": owner, "at": time.time()}))
        tmp.replace(path)

    def release(self, owner: str) -> None:
        """Drop every claim of ``owner``."""
        with self._locked():
            for path in self.root.glob("*.json"):
                try:
                    if json.loads(path.read_text()).get("owner") == owner:
                        path.unlink()
                except (OSError, ValueError):
                    continue
