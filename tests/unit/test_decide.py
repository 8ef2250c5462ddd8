"""The reconciler's pure decision table and the back-off arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState
from steward.engine.backoff import crashes_after_exit, restart_delay
from steward.engine.decide import Action, LastRun, RunEnd, decide
from steward.runtimes.base import Observation

RUNNING = Observation(ServiceState.ACTIVE)
NOTHING = Observation(ServiceState.INACTIVE)
NOW = datetime.now(UTC)
EXIT0 = Observation(ServiceState.INACTIVE, "exited with code 0", exit_code=0, finished_at=NOW)
EXIT1 = Observation(
    ServiceState.ERROR, "exited with code 1", exit_code=1, finished_at=NOW, reason="ProcessExited"
)


def d(
    obs: Observation,
    *,
    admin: AdminState = AdminState.ACTIVE,
    health: HealthState = HealthState.UNKNOWN,
    probed: bool = False,
    policy: RestartPolicy = RestartPolicy.ALWAYS,
    due: bool = True,
    expired: bool = False,
    last: LastRun | None = None,
    update_pending: bool = False,
):  # type: ignore[no-untyped-def]
    return decide(
        admin,
        obs,
        health,
        probed,
        policy,
        due,
        expired,
        last_run=last,
        update_pending=update_pending,
    )


def test_inactive_stops_running_and_rests_when_stopped() -> None:
    assert d(RUNNING, admin=AdminState.INACTIVE).action is Action.STOP
    res = d(NOTHING, admin=AdminState.INACTIVE)
    assert (res.action, res.state, res.reason) == (Action.NONE, ServiceState.INACTIVE, "Stopped")


def test_nothing_running_starts() -> None:
    assert d(NOTHING).action is Action.START


def test_running_without_probe_is_ready() -> None:
    res = d(RUNNING)
    assert res.ready and res.state is ServiceState.ACTIVE


@pytest.mark.parametrize(
    ("health", "expected_state", "ready"),
    [
        (HealthState.UNKNOWN, ServiceState.PENDING_STARTUP, False),
        (HealthState.HEALTHY, ServiceState.ACTIVE, True),
    ],
)
def test_readiness_follows_health(
    health: HealthState, expected_state: ServiceState, ready: bool
) -> None:
    res = d(RUNNING, probed=True, health=health)
    assert res.state is expected_state and res.ready is ready and res.action is Action.NONE


def test_unhealthy_restarts_unless_never() -> None:
    assert d(RUNNING, probed=True, health=HealthState.UNHEALTHY).action is Action.RESTART
    res = d(RUNNING, probed=True, health=HealthState.UNHEALTHY, policy=RestartPolicy.NEVER)
    assert res.action is Action.STOP and res.state is ServiceState.ERROR


def test_startup_allowance_exceeded_counts_as_unhealthy() -> None:
    assert d(RUNNING, probed=True, expired=True).action is Action.RESTART


@pytest.mark.parametrize(
    ("policy", "obs", "action", "state"),
    [
        (RestartPolicy.ALWAYS, EXIT0, Action.START, ServiceState.PENDING_STARTUP),
        (RestartPolicy.ALWAYS, EXIT1, Action.START, ServiceState.PENDING_STARTUP),
        (RestartPolicy.ON_FAILURE, EXIT0, Action.NONE, ServiceState.INACTIVE),
        (RestartPolicy.ON_FAILURE, EXIT1, Action.START, ServiceState.PENDING_STARTUP),
        (RestartPolicy.NEVER, EXIT0, Action.NONE, ServiceState.INACTIVE),
        (RestartPolicy.NEVER, EXIT1, Action.NONE, ServiceState.ERROR),
    ],
)
def test_restart_policy_table(
    policy: RestartPolicy, obs: Observation, action: Action, state: ServiceState
) -> None:
    res = d(obs, policy=policy)
    assert (res.action, res.state) == (action, state)


def test_crash_waits_for_backoff() -> None:
    res = d(EXIT1, due=False)
    assert (res.action, res.state, res.reason) == (
        Action.WAIT,
        ServiceState.ERROR,
        "CrashLoopBackOff",
    )


def test_diagnosed_failure_keeps_its_reason_while_waiting() -> None:
    failed = Observation(ServiceState.ERROR, "syntax", reason="TerraformSyntaxError")
    res = d(failed, due=False)
    assert (res.action, res.reason) == (Action.WAIT, "TerraformSyntaxError")


def test_steward_initiated_stop_waits_then_restarts() -> None:
    stopped = Observation(ServiceState.INACTIVE, "stopped")
    killed = LastRun(RunEnd.KILLED, "Unhealthy")
    assert d(stopped, last=killed, due=False).action is Action.WAIT
    res = d(stopped, last=killed, due=True)
    assert res.action is Action.START and res.reason == "Restarting"


def test_backoff_doubles_to_cap_and_resets() -> None:
    spec = BackoffSpec()
    assert [restart_delay(spec, n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert restart_delay(spec, 0) == 0
    assert crashes_after_exit(spec, 5, run_seconds=30) == 6
    assert crashes_after_exit(spec, 5, run_seconds=600) == 1
    assert crashes_after_exit(spec, 5, run_seconds=None) == 6


def test_backoff_spec_rejects_cap_below_initial() -> None:
    with pytest.raises(ValueError, match="maxSeconds"):
        BackoffSpec(initial_seconds=10, max_seconds=5)


def test_a_pending_in_place_update_starts_now_unless_inactive() -> None:
    """Terraform converges a changed spec with another apply: through decide(), like the rest."""
    running = d(RUNNING, probed=True, health=HealthState.HEALTHY, update_pending=True)
    assert (running.action, running.reason) == (Action.START, "Updating")
    assert d(NOTHING, update_pending=True).action is Action.START
    assert d(RUNNING, admin=AdminState.INACTIVE, update_pending=True).action is Action.STOP
