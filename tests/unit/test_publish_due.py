"""engine.driver.publish_due as a table: only a start-up status about to be superseded waits."""

from __future__ import annotations

import pytest

from steward.api.state import ServiceState
from steward.engine.driver import publish_due

HOLD = 1.0
S = ServiceState

A, P = S.ACTIVE, S.PENDING_STARTUP
CASES = {
    # id: (state, status.lastState, next step in, held for, publish now?)
    "first start, next step soon: held": (P, None, 0.01, None, False),
    "first start after inactive: held": (P, S.INACTIVE, 0.01, None, False),
    "restart after a back-off shown as error: held": (P, S.ERROR, 0.01, None, False),
    "still held within the hold": (P, None, 0.01, 0.5, False),
    "held for the whole hold: written": (P, None, 0.01, HOLD, True),
    "next step later than the hold: written": (P, None, HOLD, None, True),
    "restarted at once after active: written (the crash shows)": (
        P, A, 0.01, None, True,
    ),
    "ready: written at once": (A, None, 0.01, None, True),
    "ready after a held start: written": (A, None, 10.0, 0.2, True),
    "error: written at once": (S.ERROR, A, 0.01, None, True),
    "stopping: written at once": (S.PENDING_SHUTDOWN, A, 0.01, None, True),
    "inactive: written at once": (S.INACTIVE, None, 0.01, None, True),
}  # fmt: skip


@pytest.mark.parametrize(
    ("state", "before", "next_in", "held", "due"), CASES.values(), ids=list(CASES)
)
def test_publish_due(
    state: ServiceState, before: ServiceState | None, next_in: float, held: float | None, due: bool
) -> None:
    assert publish_due(state, before, next_in, held, HOLD) is due
