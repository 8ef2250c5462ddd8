"""The steady state: a reconcile that would change nothing but the probe record.

``Service.areconcile`` records such a step on the event loop (no worker thread, no status
rewritten field by field); anything else, and any doubt, takes the full step. A pure
predicate over the facts, so its table lives in tests/unit.
"""

from __future__ import annotations

from steward.api import reasons as R
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState, ManagedServiceStatus
from steward.engine.recorder import ready_message
from steward.engine.state import EngineState
from steward.health.probes import ProbeResult
from steward.runtimes.base import Observation


def is_quiet(
    obs: Observation,
    result: ProbeResult | None,
    status: ManagedServiceStatus,
    engine: EngineState,
    admin_state: AdminState,
    probed: bool,
    generation: int | None,
    flavor: str,
) -> bool:
    """The workload runs as observed before, healthy if probed, Ready for this
    generation, nothing pending and nothing warned."""
    st = status
    if not (
        obs.state is ServiceState.ACTIVE
        and st.state is ServiceState.ACTIVE
        and not obs.reason
        # A probed, healthy service's Ready says nothing of the runtime's message
        # ("container is running"); an unprobed one's does (checked below).
        and (not obs.message or probed)
        and (result is None or result.ok)
        and admin_state is AdminState.ACTIVE
        and not engine.pending_update
        and not engine.warned
        and not st.last_error
        and obs.details == st.runtime
        and (obs.endpoint_uri is None or obs.endpoint_uri == st.endpoint.uri)
    ):
        return False
    if probed and st.health.state is not HealthState.HEALTHY:
        return False
    ready = st.condition("Ready")
    return (
        ready is not None
        and ready.status == "True"
        and ready.reason == R.READY
        and ready.observed_generation == generation
        and st.observed_generation == generation
        and st.flavor == flavor
        and ready.message == ready_message(probed)
    )
