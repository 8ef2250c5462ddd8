"""Callables the python-mode tests run: inside the test image (this directory mounted at
/apps, ``ctapp:serve``) and, for daemons, in a fresh interpreter on the host
(``tests.support.apps.ctapp:serve``)."""

from __future__ import annotations

import http.server
import json
import os
import sys


def serve(port: str, greeting: str = "hello", host: str = "0.0.0.0") -> None:
    """Answer ``greeting``, the environment's MARK and the pid on every path, on ``host``
    (all interfaces by default, as a container must)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"greeting": greeting, "mark": os.environ.get("MARK", ""), "pid": os.getpid()}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            print(fmt % args, flush=True)

    print(f"serving {greeting} on {port} with python {sys.version_info[:2]}", flush=True)
    http.server.ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


def fail(code: int = 3) -> int:
    """Exit with ``code`` at once (pyentry returns an int result as the exit status)."""
    print(f"failing with {code}", flush=True)
    return code
