"""restartPolicy x how the run ended x back-off elapsed, checked against kubelet's rules.

kubelet (pod lifecycle docs, "Container restart policy"): Always restarts every
terminated container, OnFailure those that exited non-zero, Never none; each
restart waits out the crash back-off. Each way a Steward run can end is mapped
to the exit code kubelet would record for it: a clean exit 0, a crash 1, a
start failure 128 (StartError/RunContainerError), a liveness kill 137.
A start that waits for an input (a missing Secret: CreateContainerConfigError)
never ran, so kubelet retries it whatever the policy.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from steward.api import reasons as R
from steward.api.restart import RestartPolicy
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState
from steward.engine.decide import RESTARTS, Action, LastRun, RunEnd, decide
from steward.runtimes.base import Observation

KUBELET_EXIT = {
    RunEnd.SUCCEEDED: 0,
    RunEnd.FAILED: 1,
    RunEnd.START_FAILED: 128,
    RunEnd.KILLED: 137,
}
REASONS = {
    RunEnd.SUCCEEDED: ["", R.COMPLETED],
    RunEnd.FAILED: [R.PROCESS_EXITED, "TerraformSyntaxError"],
    RunEnd.START_FAILED: [
        R.COMMAND_NOT_FOUND,
        R.IMAGE_PULL_FAILED,
        R.VALUE_FROM_MISSING,
        R.POLICY_DENIED,
    ],
    RunEnd.KILLED: [R.UNHEALTHY],
}
NOTHING = Observation(ServiceState.INACTIVE, "stopped")


def kubelet_restarts(
    policy: RestartPolicy, exit_code: int, waiting_for_input: bool, needs_a_human: bool = False
) -> bool:
    if needs_a_human:  # no kubelet analogue: admission would have refused the Pod
        return False
    if waiting_for_input:
        return True
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return exit_code != 0
    return False


def test_table_is_complete() -> None:
    assert set(RESTARTS) == set(itertools.product(RestartPolicy, RunEnd))


CASES = [
    (policy, end, reason, due)
    for policy in RestartPolicy
    for end in RunEnd
    for reason in REASONS[end]
    for due in (False, True)
]


@pytest.mark.parametrize(("policy", "end", "reason", "due"), CASES)
def test_policy_x_ending_x_backoff(
    policy: RestartPolicy, end: RunEnd, reason: str, due: bool
) -> None:
    last = LastRun(end, reason, "the message")
    d = decide(AdminState.ACTIVE, NOTHING, HealthState.UNKNOWN, True, policy, due, False, last)
    waiting_input = end is RunEnd.START_FAILED and reason in R.WAITING_FOR_INPUT
    needs_a_human = end is RunEnd.START_FAILED and reason in R.NEEDS_A_HUMAN
    if kubelet_restarts(policy, KUBELET_EXIT[end], waiting_input, needs_a_human):
        assert not d.stalled
        if due:
            assert (d.action, d.state, d.reason) == (
                Action.START,
                ServiceState.PENDING_STARTUP,
                R.RESTARTING,
            )
        else:
            expected = (
                R.IMAGE_PULL_BACK_OFF
                if reason == R.IMAGE_PULL_FAILED
                else R.CRASH_LOOP_BACK_OFF
                if end in (RunEnd.SUCCEEDED, RunEnd.KILLED) or reason in R.GENERIC_EXITS
                else reason
            )
            assert (d.action, d.state, d.reason) == (Action.WAIT, ServiceState.ERROR, expected)
        return
    # Not restarted: the same answer whether or not the back-off elapsed.
    assert d.action is Action.NONE
    if end is RunEnd.SUCCEEDED:
        assert (d.state, d.reason, d.stalled) == (ServiceState.INACTIVE, R.COMPLETED, False)
    else:
        assert d.state is ServiceState.ERROR and d.stalled
        assert d.reason == (R.UNHEALTHY if end is RunEnd.KILLED else reason)


@pytest.mark.parametrize("policy", list(RestartPolicy))
@pytest.mark.parametrize("expired", [False, True])
def test_liveness_failure_while_running(policy: RestartPolicy, expired: bool) -> None:
    """An unhealthy run is killed (exit 137): restarted unless Never, which stays stopped."""
    running = Observation(ServiceState.ACTIVE)
    health = HealthState.UNKNOWN if expired else HealthState.UNHEALTHY
    d = decide(AdminState.ACTIVE, running, health, True, policy, True, expired)
    assert d.reason == R.UNHEALTHY and d.state is ServiceState.ERROR
    if policy is RestartPolicy.NEVER:
        assert d.action is Action.STOP and d.stalled
    else:
        assert d.action is Action.RESTART and not d.stalled


def test_a_reported_exit_wins_over_the_recorded_ending() -> None:
    """What the runtime reports is newer than what the engine remembered."""
    exit0 = Observation(ServiceState.INACTIVE, "done", exit_code=0, finished_at=datetime.now(UTC))
    stale = LastRun(RunEnd.START_FAILED, R.COMMAND_NOT_FOUND)
    policy = RestartPolicy.ON_FAILURE
    d = decide(AdminState.ACTIVE, exit0, HealthState.UNKNOWN, False, policy, True, False, stale)
    assert (d.action, d.reason) == (Action.NONE, R.COMPLETED)


def test_reconciling_follows_work() -> None:
    last = LastRun(RunEnd.FAILED, R.PROCESS_EXITED)
    waiting, done = (
        decide(AdminState.ACTIVE, NOTHING, HealthState.UNKNOWN, False, policy, False, False, last)
        for policy in (RestartPolicy.ALWAYS, RestartPolicy.NEVER)
    )
    assert waiting.reconciling and not waiting.stalled
    assert not done.reconciling and done.stalled
