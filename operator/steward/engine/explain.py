"""The message a user reads beside a decision: why it failed, when the next attempt is.

``decide()`` says what to do and gives the reason; this adds what only the facts around
it know (the probe's last message, the back-off's absolute retry time), so a message
stays the same while nothing changes and Events are not repeated.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from steward.api import reasons as R
from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.status import HealthStatus
from steward.engine.backoff import restart_delay
from steward.engine.decide import Action, Decision
from steward.engine.recorder import BACKOFF_MARK
from steward.engine.state import EngineState


def explain(
    decision: Decision,
    running: bool,
    health: HealthStatus,
    restart_policy: RestartPolicy,
    backoff: BackoffSpec,
    engine: EngineState,
) -> Decision:
    """``decision`` with the message a user should read (the same object if unchanged)."""
    message = decision.message
    next_at = engine.next_restart_at
    if decision.reason == R.UNHEALTHY and running:
        message = f"liveness probe failed: {health.message}"
    elif decision.reason == R.UNHEALTHY and not message:
        message = f"stopped after failed probes; restartPolicy {restart_policy.value}"
    if decision.action is Action.WAIT and next_at:
        # An absolute time, not a countdown: the message stays the same while it waits.
        at = datetime.fromtimestamp(next_at, UTC).strftime("%H:%M:%SZ")
        delay = restart_delay(backoff, engine.crashes)
        message = f"{message or 'ended'}{BACKOFF_MARK}{delay:g}s, next attempt at {at}"
    elif decision.reason == R.STARTING and health.message:
        message = f"waiting for the first successful probe: {health.message}"
    if message == decision.message:
        return decision
    return dataclasses.replace(decision, message=message)
