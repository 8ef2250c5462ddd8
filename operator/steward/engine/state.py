"""The engine's own bookkeeping for one service, persisted beside its status.

What the user sees is ``ManagedServiceStatus``; this is what the engine needs
to decide correctly after a restart of Steward: the crash count and when the
back-off ends, which exit was already accounted, how the last run ended when
the runtime cannot tell (a start failure, Steward's own stop), and digests
that detect changed inputs without keeping secret values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from steward.engine.decide import LastRun, RunEnd


@dataclass
class EngineState:
    crashes: int = 0
    """Ended runs in the current crash loop (the back-off exponent)."""
    next_restart_at: float | None = None
    """Epoch seconds when the back-off ends; None when nothing waits."""
    accounted_exit: str | None = None
    """Key of the last runtime-reported exit already counted (counted once)."""
    last_run: LastRun | None = None
    """How the last run ended, as the engine saw it; None while one runs or none did."""
    env_digest: str | None = None
    """Digest of resolved Secret/ConfigMap values the running workload got."""
    pending_update: bool = False
    """A spec change the runtime converges in place (Terraform) is due."""
    warned: list[str] = field(default_factory=list)
    """reason|message of Warnings already sent since the last Ready: one per distinct failure."""

    def reset_loop(self) -> None:
        """A fresh start: no back-off, no remembered ending (user start, spec change)."""
        self.crashes = 0
        self.next_restart_at = None
        self.last_run = None
        self.warned = []

    def first_warning(self, key: str) -> bool:
        """Remember ``key``; True the first time it is seen (a few are kept)."""
        if key in self.warned:
            return False
        self.warned = [*self.warned[-7:], key]
        return True

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "crashes": self.crashes,
            "nextRestartAt": self.next_restart_at,
            "accountedExit": self.accounted_exit,
            "envDigest": self.env_digest,
            "pendingUpdate": self.pending_update,
            "warned": self.warned,
        }
        if self.last_run is not None:
            data["lastRun"] = {
                "end": self.last_run.end.value,
                "reason": self.last_run.reason,
                "message": self.last_run.message,
            }
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> EngineState:
        """Parse what ``to_json`` wrote; unknown or damaged input gives a fresh state."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                return cls()
            last = data.get("lastRun")
            last_run = (
                LastRun(
                    RunEnd(last["end"]), str(last.get("reason", "")), str(last.get("message", ""))
                )
                if isinstance(last, dict)
                else None
            )
            nxt = data.get("nextRestartAt")
            return cls(
                crashes=int(data.get("crashes") or 0),
                next_restart_at=float(nxt) if nxt is not None else None,
                accounted_exit=data.get("accountedExit"),
                last_run=last_run,
                env_digest=data.get("envDigest"),
                pending_update=bool(data.get("pendingUpdate")),
                warned=[str(w) for w in data.get("warned") or [] if isinstance(w, str)],
            )
        except (ValueError, KeyError, TypeError):
            return cls()
