"""Port choice for endpoints: preferred, else last used, else a free one.

Two services must never pick the same port in the window between choosing
it and the process binding it, so every choice is recorded as a claim in a
registry directory, under a file lock, until the service releases it. Each
owner's claims are also listed in ``owners/``, so a release reads one file,
not every claim (1,000 services stopping read a million files otherwise).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

STALE_CLAIM_SECONDS = 120.0
OWNERS = "owners"


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

    def _index_path(self, owner: str) -> Path:
        return self.root / OWNERS / f"{hashlib.sha256(owner.encode()).hexdigest()[:32]}.json"

    def _indexed(self, owner: str) -> list[str] | None:
        """The claim files listed for ``owner``; None when it has no list (claims made by an
        earlier Steward, which kept none: those are found by a scan)."""
        try:
            names = json.loads(self._index_path(owner).read_text())
        except (OSError, ValueError):
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    def _write(self, owner: str, host: str, port: int) -> None:
        path = self._claim_path(host, port)
        _replace(path, json.dumps({"owner": owner, "at": time.time()}))
        names = self._indexed(owner) or []
        if path.name not in names:
            index = self._index_path(owner)
            index.parent.mkdir(exist_ok=True)
            _replace(index, json.dumps([*names, path.name]))

    def release(self, owner: str) -> None:
        """Drop every claim of ``owner``."""
        with self._locked():
            names = self._indexed(owner)
            paths = self.root.glob("*.json") if names is None else (self.root / n for n in names)
            for path in paths:
                try:
                    if json.loads(path.read_text()).get("owner") == owner:
                        path.unlink()
                except (OSError, ValueError):
                    continue
            self._index_path(owner).unlink(missing_ok=True)


def _replace(path: Path, text: str) -> None:
    """Atomically, under the registry's lock (one writer at a time: a fixed temporary name)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
