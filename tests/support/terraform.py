"""Terraform test helpers: specs, runtimes in the background, the http state backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from steward.runtimes.terraform import TerraformRuntime
from tests.support import waits
from tests.support.data import terraform

MakeRT = Callable[..., TerraformRuntime]

# Modules (tests/data/terraform) with built-ins only: no provider can be downloaded here.
WEB = terraform("web.tf")
DRIFT = terraform("drift.tf")
SLOW = terraform("slow.tf")
MARKER = terraform("marker.tf")


def spec_of(main_tf: str, **extra: Any) -> dict[str, Any]:
    return {"module": {"inline": {"main.tf": main_tf}}, **extra}


def sleeps(seconds: str) -> list[psutil.Process]:
    """Live ``sleep SECONDS`` processes (tests use a unique length each, e.g. "61.25")."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if (p.info["cmdline"] or [])[:2] == ["sleep", seconds]:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    return waits.wait_for(cond, timeout, step=0.05, what=what)


class Background:
    """``rt.start()`` in a thread, keeping what it raised."""

    def __init__(self, rt: TerraformRuntime) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(rt,), daemon=True)
        self.thread.start()

    def _run(self, rt: TerraformRuntime) -> None:
        try:
            rt.start()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 30) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "start() did not return"
        return self.error


class StateServer:
    """Terraform's `http` backend protocol (GET/POST/DELETE state, LOCK/UNLOCK) in memory."""

    def __init__(self) -> None:
        self.state: bytes | None = None
        self.lock: dict[str, Any] | None = None
        self.unlocks: list[str] = []
        self.mutex = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _reply(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with server.mutex:
                    state = server.state
                self._reply(200, state) if state else self._reply(404)

            def do_POST(self) -> None:
                body = self._body()
                with server.mutex:
                    server.state = body
                self._reply(200)

            def do_DELETE(self) -> None:
                with server.mutex:
                    server.state = None
                self._reply(200)

            def do_LOCK(self) -> None:
                info = json.loads(self._body() or b"{}")
                with server.mutex:
                    if server.lock is not None:
                        self._reply(423, json.dumps(server.lock).encode())
                        return
                    server.lock = info
                self._reply(200)

            def do_UNLOCK(self) -> None:
                body = self._body()
                info = json.loads(body) if body else {}
                with server.mutex:
                    held = server.lock
                    if held is not None and info.get("ID") not in (None, "", held.get("ID")):
                        self._reply(409, json.dumps(held).encode())
                        return
                    server.unlocks.append(str(info.get("ID", "")))
                    server.lock = None
                self._reply(200)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/state"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def backend(self) -> dict[str, Any]:
        return {"http": {"address": self.url, "lockAddress": self.url, "unlockAddress": self.url}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
