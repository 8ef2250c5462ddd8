"""engine.driver.publish_due as a table: only a start-up status about to be superseded waits."""

from __future__ import annotations

import pytest

from steward.api.state import ServiceState
from steward.engine.driver import publish_due

HOLD = 1.0
S = ServiceState

CASES = {
    # id: (state, next step in, held for, publish now?)
    "starting, next step soon: held": (S.PENDING_STARTUP, 0.01, None, False),
    "starting, still held within the hold": (S.PENDING_STARTUP, 0.01, 0.5, False),
    "starting, held for the whole hold: written": (S.PENDING_STARTUP, 0.01, HOLD, True),
    "starting, next step later than the hold: written": (S.PENDING_STARTUP, HOLD, None, True),
    "ready: written at once": (S.ACTIVE, 0.01, None, True),
    "ready after a held start: written": (S.ACTIVE, 10.0, 0.2, True),
    "error: written at once": (S.ERROR, 0.01, None, True),
    "stopping: written at once": (S.PENDING_SHUTDOWN, 0.01, None, True),
    "inactive: written at once": (S.INACTIVE, 0.01, None, True),
}


@pytest.mark.parametrize(("state", "next_in", "held", "due"), CASES.values(), ids=list(CASES))
def test_publish_due(state: ServiceState, next_in: float, held: float | None, due: bool) -> None:
    assert publish_due(state, next_in, held, HOLD) is due
