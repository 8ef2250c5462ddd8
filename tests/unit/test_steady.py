"""engine.steady.is_quiet as a table: the steady state goes on the loop, anything else not.

Each row changes one fact of a quiet, Ready, healthy service; every one of them must send
the step through the full update (a wrong True would leave a stale status forever).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from steward.api import reasons as R
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState, ManagedServiceStatus
from steward.engine.recorder import ready_message
from steward.engine.state import EngineState
from steward.engine.steady import is_quiet
from steward.health.probes import ProbeResult
from steward.runtimes.base import Observation

GEN = 3
OK = ProbeResult(ok=True, message="", latency=0.001)


def facts(probed: bool = True) -> dict[str, Any]:
    """A Ready, healthy service of generation GEN whose runtime says what status holds."""
    st = ManagedServiceStatus()
    st.update_state(ServiceState.ACTIVE)
    st.observed_generation = GEN
    st.flavor = "daemon"
    st.runtime = {"pid": 42}
    st.endpoint.uri = "http://127.0.0.1:8080"
    st.health.state = HealthState.HEALTHY if probed else HealthState.UNKNOWN
    st.set_condition("Ready", "True", R.READY, ready_message(probed), GEN)
    return {
        "obs": Observation(state=ServiceState.ACTIVE, details={"pid": 42}),
        "result": OK if probed else None,
        "status": st,
        "engine": EngineState(),
        "admin_state": AdminState.ACTIVE,
        "probed": probed,
        "generation": GEN,
        "flavor": "daemon",
    }


def test_a_ready_healthy_service_is_quiet() -> None:
    assert is_quiet(**facts())
    assert is_quiet(**facts(probed=False))
    f = facts()
    f["result"] = None  # no probe due this step
    assert is_quiet(**f)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.__setitem__(key, value)


def _status(fn: Callable[[ManagedServiceStatus], Any]) -> Callable[[dict[str, Any]], None]:
    return lambda f: fn(f["status"])


def _engine(fn: Callable[[EngineState], Any]) -> Callable[[dict[str, Any]], None]:
    return lambda f: fn(f["engine"])


NOT_QUIET: dict[str, Callable[[dict[str, Any]], None]] = {
    "the workload is starting": _set("obs", Observation(state=ServiceState.PENDING_STARTUP)),
    "the workload ended": _set("obs", Observation(state=ServiceState.INACTIVE, exit_code=1)),
    "the runtime reports a reason": _set(
        "obs", Observation(state=ServiceState.ACTIVE, details={"pid": 42}, reason="Paused")
    ),
    "the runtime's details changed": _set(
        "obs", Observation(state=ServiceState.ACTIVE, details={"pid": 43})
    ),
    "the runtime knows another URI": _set(
        "obs",
        Observation(state=ServiceState.ACTIVE, details={"pid": 42}, endpoint_uri="http://x:1"),
    ),
    "the probe failed": _set("result", ProbeResult(ok=False, message="refused", latency=0.0)),
    "the admin stopped it": _set("admin_state", AdminState.INACTIVE),
    "a new generation": _set("generation", GEN + 1),
    "another flavor": _set("flavor", "container"),
    "status is not active": _status(lambda s: s.update_state(ServiceState.ERROR)),
    "health is not healthy yet": _status(lambda s: setattr(s.health, "state", HealthState.UNKNOWN)),
    "a last error is shown": _status(lambda s: setattr(s, "last_error", "boom")),
    "Ready is False": _status(lambda s: s.set_condition("Ready", "False", R.STARTING, "", GEN)),
    "Ready has another message": _status(
        lambda s: s.set_condition("Ready", "True", R.READY, "custom", GEN)
    ),
    "an update is pending": _engine(lambda e: setattr(e, "pending_update", True)),
    "a warning was sent": _engine(lambda e: e.warned.append("Unhealthy|x")),
}


@pytest.mark.parametrize("change", NOT_QUIET.values(), ids=list(NOT_QUIET))
def test_any_change_takes_the_full_step(change: Callable[[dict[str, Any]], None]) -> None:
    f = facts()
    change(f)
    assert not is_quiet(**f)


def test_an_unprobed_service_compares_the_runtime_message() -> None:
    f = facts(probed=False)
    f["obs"] = Observation(state=ServiceState.ACTIVE, details={"pid": 42}, message="running")
    assert not is_quiet(**f)
    g = facts(probed=True)
    g["obs"] = Observation(state=ServiceState.ACTIVE, details={"pid": 42}, message="running")
    assert is_quiet(**g)
