"""engine.explain as a table: the message beside a decision, stable while nothing changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from steward.api import reasons as R
from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.state import ServiceState
from steward.api.status import HealthStatus
from steward.engine.decide import Action, Decision
from steward.engine.explain import explain
from steward.engine.state import EngineState

AT = datetime(2026, 12, 4, 3, 4, 5, tzinfo=UTC).timestamp()


def engine(crashes: int = 0, next_at: float | None = None) -> EngineState:
    return EngineState(crashes=crashes, next_restart_at=next_at)


WAIT, NONE, ERROR = Action.WAIT, Action.NONE, ServiceState.ERROR
BACK_OFF = R.CRASH_LOOP_BACK_OFF

# id: (decision, running, health message, engine bookkeeping, expected message)
CASES: dict[str, tuple[Decision, bool, str, EngineState, str]] = {
    "unhealthy-and-running": (
        Decision(Action.RESTART, ERROR, R.UNHEALTHY), True, "HTTP 500", engine(),
        "liveness probe failed: HTTP 500",
    ),
    "unhealthy-stopped": (
        Decision(NONE, ERROR, R.UNHEALTHY), False, "", engine(),
        "stopped after failed probes; restartPolicy Never",
    ),
    "back-off-absolute-time": (
        Decision(WAIT, ERROR, BACK_OFF, "exit code 1"), False, "", engine(2, AT),
        "exit code 1; back-off 20s, next attempt at 03:04:05Z",
    ),
    "back-off-without-message": (
        Decision(WAIT, ERROR, BACK_OFF), False, "", engine(1, AT),
        "ended; back-off 10s, next attempt at 03:04:05Z",
    ),
    "starting-with-probe-message": (
        Decision(NONE, ServiceState.PENDING_STARTUP, R.STARTING), True, "connection refused",
        engine(), "waiting for the first successful probe: connection refused",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("decision", "running", "health", "state", "expected"), CASES.values(), ids=list(CASES)
)
def test_message(
    decision: Decision, running: bool, health: str, state: EngineState, expected: str
) -> None:
    out = explain(
        decision, running, HealthStatus(message=health), RestartPolicy.NEVER, BackoffSpec(), state
    )
    assert out.message == expected
    assert (out.action, out.state, out.reason, out.stalled) == (
        decision.action,
        decision.state,
        decision.reason,
        decision.stalled,
    )


def test_a_decision_needing_nothing_is_returned_as_is() -> None:
    d = Decision(Action.NONE, ServiceState.ACTIVE, R.READY)
    assert explain(d, True, HealthStatus(), RestartPolicy.ALWAYS, BackoffSpec(), engine()) is d
