"""A tiny HTTP app for the examples (the python-callable mode needs something importable)."""

from __future__ import annotations

import http.server
import os


def serve(port: str, greeting: str = "hello", require_env: str = "") -> None:
    """Serve ``greeting`` on / and 200 on /healthz; refuse to start if ``require_env`` is unset."""
    if require_env and not os.environ.get(require_env):
        raise SystemExit(f"environment variable {require_env} is not set")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (b"ok" if self.path == "/healthz" else greeting.encode()) + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            print(fmt % args, flush=True)

    print(f"listening on 127.0.0.1:{port}", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
