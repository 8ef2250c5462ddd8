"""Callables the python-mode tests run in a fresh interpreter."""

from __future__ import annotations

import http.server
import os


def serve(port: str, greeting: str = "hello") -> None:
    """A tiny HTTP server answering ``greeting`` on every path."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{greeting} from {os.getpid()}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            print(fmt % args, flush=True)

    print(f"serving {greeting} on {port}", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
