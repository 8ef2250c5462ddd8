"""What the parts of one TerraformRuntime share: spec, context, workspace, record and memory.

The runtime (``runtime``) answers the Runtime interface; its collaborators do
the work: ``sequence`` (one command sequence at a time, across processes),
``commands`` (one command, its failures and stale locks), ``apply``
(prepare, init, apply, destroy), ``outputs`` and ``drift``. They all read
and write this one Session, under its ``state_lock``. Sensitive values
(resolved varsFrom Secrets, sensitive outputs) live here in memory only.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from steward.api.terraform import TerraformSpec
from steward.runtimes.base import RuntimeContext, spec_hash
from steward.runtimes.terraform.binary import Binary
from steward.runtimes.terraform.log import TerraformLog
from steward.runtimes.terraform.runner import Runner
from steward.runtimes.terraform.workspace import Record, Workspace

APPLYING, DESTROYING, CHECKING, CORRECTING = (
    "applying",
    "destroying",
    "checking drift",
    "correcting drift",
)
"""What a sequence is doing (``Session.activity``), shown in status."""


def now() -> datetime:
    return datetime.now(UTC)


class Session:
    """The shared state of one Terraform service in this process."""

    def __init__(self, spec: TerraformSpec, ctx: RuntimeContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.ws = Workspace(ctx.runtime_dir)
        self.record: Record = self.ws.load()
        self.log = TerraformLog(self.ws.log_path)
        self.runner = Runner(self.log, self.ws.holder_path, self.redact, lambda: self.ctx.sandbox)
        self.state_lock = threading.RLock()
        """Guards ``record`` and ``activity`` (re-entrant: helpers save under it)."""
        self.activity: str | None = None
        self.binary: Binary | None = None
        self.env: dict[str, str] = {}
        """The environment of the last prepared command."""
        self.secrets: set[str] = set()
        self.sensitive: dict[str, Any] = {}
        self.last_outputs: dict[str, Any] = {}
        self.closed = False

    def redact(self, text: str) -> str:
        """The context's secrets, varsFrom Secret values and sensitive output values -> ***."""
        text = self.ctx.redact(text)
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def spec_hash(self) -> str:
        return self.ctx.spec_hash or spec_hash(self.spec)

    def save(self) -> None:
        """Write the record as it is now."""
        with self.state_lock:
            self.ws.save(self.record)
