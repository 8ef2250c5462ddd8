"""The `kubectl get`-like rows of `steward local` and `steward status`.

One row shape for both commands, built from the status the engine persists,
so they always agree. Columns are sized from the services known when the
table starts; a longer endpoint is shortened in the row and printed whole on
the next line, so the columns stay aligned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from steward.api import reasons as R
from steward.api.flavors import NAMES
from steward.api.status import raw_condition

RUNNING_STATES = frozenset({"active", "pending_startup", "pending_shutdown"})
MESSAGE_MAX = 160
FLAVOR_WIDTH = 10
STATE_WIDTH = 16
HEALTH_WIDTH = 9


@dataclass(frozen=True)
class Row:
    """What a status line shows; printed again only when it changes."""

    name: str
    flavor: str
    state: str
    endpoint: str
    health: str
    ready: str
    reason: str
    message: str
    next_attempt: str = ""

    def to_json(self) -> str:
        """camelCase keys, like the Kubernetes objects scripts also read."""
        data = {_camel(k): v for k, v in asdict(self).items()}
        return json.dumps(data, sort_keys=True)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def row_from(manifest: dict[str, Any], status: dict[str, Any]) -> Row:
    """A row from a manifest and its status, as the engine persists them (camelCase)."""
    meta = manifest.get("metadata") or {}
    spec = manifest.get("spec") or {}
    flavor = status.get("flavor") or next((f for f in NAMES if f in spec), "?")
    state = str(status.get("state") or "inactive")
    ready = raw_condition(status, R.READY)
    reason = str(ready.get("reason") or "")
    message = "" if reason in ("Ready", "Starting") else str(ready.get("message") or "")
    # A service that is not running has no endpoint to offer (even if a port is chosen).
    uri = (status.get("endpoint") or {}).get("uri") or ""
    health = (
        (status.get("health") or {}).get("state", "unknown")
        if spec.get("endpoint") is not None
        else "-"
    )
    nxt = status.get("nextRestartAt") or ""
    return Row(
        name=f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}",
        flavor=str(flavor),
        state=state,
        endpoint=uri if state in RUNNING_STATES else "",
        health=str(health) if state in RUNNING_STATES else "-",
        ready=str(ready.get("status") or "False"),
        reason=reason or "-",
        message=shorten(message),
        next_attempt=str(nxt) if reason not in ("Ready", "") and nxt else "",
    )


def shorten(message: str, limit: int = MESSAGE_MAX) -> str:
    """Cut a long failure, never the retry time after it (``...; back-off 10s, next attempt at``)."""
    if len(message) <= limit:
        return message
    head, sep, tail = message.partition("; back-off ")
    tail = sep + tail
    room = max(20, limit - len(tail))
    return head[: room - 1] + "~" + tail if len(head) > room else head + tail


def endpoint_width(spec: dict[str, Any]) -> int:
    """The longest endpoint this spec can show: protocol://host:65535, or a guess for outputs."""
    ep = spec.get("endpoint")
    if not ep:
        return 1
    if "terraform" in spec:
        return 32
    return len(f"{ep.get('protocol', 'tcp')}://{ep.get('host', '127.0.0.1')}:65535")


class Table:
    """Renders rows with columns sized for the services it was given."""

    def __init__(self, names: list[str], endpoint_widths: list[int]) -> None:
        self.name_width = max([len("NAME"), *map(len, names)])
        self.endpoint_width = min(48, max([len("ENDPOINT"), *endpoint_widths]))

    def header(self) -> str:
        return self._line("NAME", "TYPE", "STATE", "ENDPOINT", "HEALTH", "READY", "REASON")

    def render(self, row: Row) -> str:
        """One line, plus a continuation line with the whole endpoint when it is too long."""
        endpoint = row.endpoint or "-"
        long = len(endpoint) > self.endpoint_width
        shown = endpoint[: self.endpoint_width - 1] + "~" if long else endpoint
        reason = row.reason + (f"  {row.message}" if row.message else "")
        line = self._line(row.name, row.flavor, row.state, shown, row.health, row.ready, reason)
        if long:
            line += f"\n{'':{self.name_width}}   endpoint: {endpoint}"
        return line

    def _line(self, *cells: str) -> str:
        name, flavor, state, endpoint, health, ready, reason = cells
        return (
            f"{name:<{self.name_width}}  {flavor:<{FLAVOR_WIDTH}} {state:<{STATE_WIDTH}} "
            f"{endpoint:<{self.endpoint_width}}  {health:<{HEALTH_WIDTH}} {ready:<5}  {reason}"
        ).rstrip()
