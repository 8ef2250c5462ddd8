"""A module's outputs: read with ``output -json``, sensitive values kept in memory only.

Plain outputs are recorded (redacted: an unmarked output may still echo a
Secret's value); sensitive ones are held in the session, their values added
to what is redacted everywhere, and only their names recorded. One output
may be the service's endpoint URI (``endpointOutput``).
"""

from __future__ import annotations

import json
from typing import Any

from steward.runtimes.base import RuntimeFailure
from steward.runtimes.terraform.commands import Commands
from steward.runtimes.terraform.diag import Reason
from steward.runtimes.terraform.session import Session
from steward.runtimes.terraform.status import redact_json, strings

MIN_SECRET_LEN = 4
"""Shorter sensitive values are not redacted: they would mangle every log line."""


def read_outputs(s: Session, commands: Commands, env: dict[str, str]) -> None:
    """``output -json``: values kept in memory, sensitive names recorded, stdout never logged."""
    res = commands.run("output", ["output", "-json", "-no-color"], env, log_stdout=False)
    commands.check(res)
    try:
        data: dict[str, Any] = json.loads(res.stdout or "{}")
    except ValueError as exc:
        raise RuntimeFailure(
            f"terraform output -json printed something else than JSON: {exc}",
            reason=Reason.failed("output"),
        ) from None
    plain: dict[str, Any] = {}
    sensitive: dict[str, Any] = {}
    for name, out in data.items():
        if out.get("sensitive"):
            sensitive[name] = out.get("value")
        else:  # not marked sensitive, but it may still echo a Secret's value
            plain[name] = redact_json(out.get("value"), s.redact)
    s.sensitive = sensitive
    s.secrets |= {v for val in sensitive.values() for v in strings(val) if len(v) >= MIN_SECRET_LEN}
    s.last_outputs = plain


def endpoint_uri(s: Session) -> str | None:
    """The value of ``endpointOutput`` after a read; RuntimeFailure when it cannot be the endpoint."""
    name = s.spec.endpoint_output
    if name is None:
        return None
    if name in s.sensitive:
        raise RuntimeFailure(
            f"endpointOutput {name!r} is sensitive; status is public, so it cannot be the endpoint",
            reason=Reason.OUTPUT_SENSITIVE,
        )
    if name not in s.last_outputs:
        known = ", ".join(sorted(s.last_outputs)) or "none"
        raise RuntimeFailure(
            f"endpointOutput {name!r} is not an output of the module (outputs: {known})",
            reason=Reason.OUTPUT_MISSING,
        )
    value = s.last_outputs[name]
    if not isinstance(value, str) or not value:
        raise RuntimeFailure(
            f"endpointOutput {name!r} must be a non-empty string, got {type(value).__name__}",
            reason=Reason.OUTPUT_INVALID,
        )
    return value
