"""Who made a LIST or WATCH: the apiserver's audit log, for the bench's control plane.

``apiserver_request_total`` has no per-client label, so a window's count of ``WATCH
configmaps`` cannot tell the apiserver's own informers (which re-watch every 5-10 min)
from an agent's kopf watch. The audit log names the user of each request. Only list
and watch are logged, at Metadata level and once each (when the response completes,
which is also when the metric counts it), so the cost to every other scenario is a
line per re-list or re-watch.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted", "Panic"]
rules:
  - level: Metadata
    verbs: ["list", "watch"]
  - level: None
"""

APISERVER_USER = "system:apiserver"
"""The identity of the apiserver's loopback client (its own informers and controllers)."""


class AuditLog:
    """The control plane's audit log file, read from the start on each question."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.policy = directory / "audit-policy.yaml"
        self.path = directory / "audit.log"
        self.policy.write_text(POLICY)

    def apiserver_args(self) -> list[str]:
        return [
            f"--audit-policy-file={self.policy}",
            f"--audit-log-path={self.path}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",  # no rotation: one file for the run
        ]

    def completed(self, t0: float, t1: float) -> Counter[tuple[str, str, str, str]]:
        """(VERB, resource, subresource, user) of requests completed in [t0, t1) (epoch s)."""
        out: Counter[tuple[str, str, str, str]] = Counter()
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                ev = json.loads(line)
                t = datetime.fromisoformat(ev["stageTimestamp"]).timestamp()
            except (ValueError, KeyError):
                continue  # a line being written
            if not t0 <= t < t1 or ev.get("stage") != "ResponseComplete":
                continue
            ref = ev.get("objectRef") or {}
            out[
                (
                    str(ev.get("verb", "")).upper(),
                    ref.get("resource", ""),
                    ref.get("subresource", ""),
                    (ev.get("user") or {}).get("username", ""),
                )
            ] += 1
        return out

    def apiserver_own(self, t0: float, t1: float) -> Counter[tuple[str, str, str]]:
        """The LISTs and WATCHes the apiserver's own loopback client completed in [t0, t1)."""
        out: Counter[tuple[str, str, str]] = Counter()
        for (verb, res, sub, user), n in self.completed(t0, t1).items():
            if user == APISERVER_USER:
                out[(verb, res, sub)] += n
        return out
