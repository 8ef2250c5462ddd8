"""What the Terraform runtime reports: status details, plan summaries, output values made safe.

Everything here ends up in ``status`` (a public, size-limited Kubernetes
field): never a sensitive value, never a huge one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from steward.api.terraform import TerraformSpec
from steward.runtimes.terraform.workspace import Record

MAX_OUTPUT_BYTES = 4096
"""Outputs larger than this are summarised in status (etcd objects are small)."""


def details(rec: Record, spec: TerraformSpec) -> dict[str, Any]:
    """status.runtime: never a sensitive value."""
    out: dict[str, Any] = {
        "backend": spec.backend.kind,
        "initCount": rec.init_count,
    }
    if rec.binary:
        out["binary"] = dict(rec.binary)
    last = rec.last_apply
    if last is not None:
        out["outputs"] = {k: summarise(v) for k, v in last.outputs.items()}
        out["sensitiveOutputs"] = list(last.sensitive_outputs)
        out["lastApply"] = {
            "ok": last.ok,
            "finishedAt": last.finished_at,
            "seconds": last.seconds,
        }
    if spec.drift_detection.enabled and rec.drift.checked_at:
        out["drift"] = {
            "status": rec.drift.status,
            "checkedAt": rec.drift.checked_at,
            "corrections": rec.drift.corrections,
        }
    if rec.stuck_lock:
        out["lock"] = rec.stuck_lock
    return out


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (to redact a sensitive output wherever it shows up)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif value is not None:
        yield json.dumps(value)


def redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_json(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, redact) for v in value]
    return value


def summarise(value: Any) -> Any:
    text = json.dumps(value)
    if len(text) <= MAX_OUTPUT_BYTES:
        return value
    return f"<{len(text)} bytes, not shown>"


def plan_summary(stdout: str) -> str:
    """The ``Plan: 1 to add, ...`` line (plus what changes), for status."""
    lines = [ln.strip() for ln in stdout.splitlines()]
    changes = [
        ln.lstrip("# ")
        for ln in lines
        if ln.startswith("# ") and (" will be " in ln or " must be " in ln)
    ]
    plan = next(
        (ln for ln in lines if ln.startswith("Plan:") or ln.startswith("Changes to Outputs")), ""
    )
    text = "; ".join([*changes[:5], plan] if plan else changes[:5])
    return f"drift detected: {text}" if text else "drift detected"


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
