"""The floor for P2: a kopf operator that does nothing but write Ready for each object.

What any kopf-based operator pays per resource (kopf's watch, its per-object
bookkeeping, one status patch), without Steward's work (no processes, no probes,
no Events, no state files). Run as ``python -m bench.harness.kopf_floor -n NS
--metrics-port PORT``: the port serves an empty /metrics so the bench harness
starts and samples it exactly like the operator.
"""

from __future__ import annotations

import argparse
import http.server
import threading
from datetime import UTC, datetime
from typing import Any

import kopf


@kopf.on.startup()
def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # no Events: the floor writes status only
    settings.watching.server_timeout = 270


@kopf.on.event("steward.dev", "v1alpha1", "managedservices")
def _ready(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    status = body.get("status") or {}
    if any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ):
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["state"] = "active"
    patch.status["observedGeneration"] = body.meta.get("generation")
    patch.status["conditions"] = [
        {"type": "Ready", "status": "True", "reason": "Floor", "lastTransitionTime": now}
    ]


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"# kopf floor: no metrics\n")

    def log_message(self, *args: Any) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.metrics_port), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kopf.run(standalone=True, namespaces=[args.namespace])


if __name__ == "__main__":
    main()
