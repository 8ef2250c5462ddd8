"""The reconciler's decision: given what is wanted and what is seen, what to do next.

Pure: no I/O, no clock; the caller passes ``now``-derived facts in. Every
branch here is a sentence a user could read in the Ready condition.

How a run ended and what the restart policy makes of it is one table,
:data:`RESTARTS` (policy x how the run ended); whether the back-off has
elapsed picks between starting now and waiting. kubelet's rules, extended to
the two ways a run can end that a container in a pod cannot: failing to start
at all, and being stopped by Steward itself (liveness or startup failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from steward.api import reasons as R
from steward.api.restart import RestartPolicy
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState
from steward.runtimes.base import Observation

GENERIC_EXIT_REASONS = R.GENERIC_EXITS


class Action(StrEnum):
    NONE = "none"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    """Stop now (liveness failure) and start again after the back-off."""
    WAIT = "wait"
    """Back-off: nothing to do until it elapses."""


class RunEnd(StrEnum):
    """How the last run (or attempt) ended."""

    SUCCEEDED = "Succeeded"
    """Exited with code 0."""
    FAILED = "Failed"
    """Exited non-zero, or the runtime reports the run broken (a failed apply)."""
    START_FAILED = "StartFailed"
    """Could not be started at all (command or image not found, port taken...)."""
    KILLED = "Killed"
    """Stopped by Steward: the liveness probe failed or startup never succeeded."""


@dataclass(frozen=True)
class LastRun:
    """The engine's record of the last ended run, for what the runtime cannot show."""

    end: RunEnd
    reason: str = ""
    message: str = ""


RESTARTS: dict[tuple[RestartPolicy, RunEnd], bool] = {
    (RestartPolicy.ALWAYS, RunEnd.SUCCEEDED): True,
    (RestartPolicy.ALWAYS, RunEnd.FAILED): True,
    (RestartPolicy.ALWAYS, RunEnd.START_FAILED): True,
    (RestartPolicy.ALWAYS, RunEnd.KILLED): True,
    (RestartPolicy.ON_FAILURE, RunEnd.SUCCEEDED): False,
    (RestartPolicy.ON_FAILURE, RunEnd.FAILED): True,
    (RestartPolicy.ON_FAILURE, RunEnd.START_FAILED): True,
    (RestartPolicy.ON_FAILURE, RunEnd.KILLED): True,
    (RestartPolicy.NEVER, RunEnd.SUCCEEDED): False,
    (RestartPolicy.NEVER, RunEnd.FAILED): False,
    (RestartPolicy.NEVER, RunEnd.START_FAILED): False,
    (RestartPolicy.NEVER, RunEnd.KILLED): False,
}
"""Whether a run that ended this way is started again (after the back-off).

kubelet: Always restarts every ended container; OnFailure those with a
non-zero exit (a liveness kill exits 137); Never none. A start failure counts
as a failed run (kubelet's RunContainerError ends the container with 128)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    state: ServiceState
    reason: str
    message: str = ""
    stalled: bool = False
    """Nothing more will happen without a human (kstatus Stalled): a terminal failure."""

    @property
    def ready(self) -> bool:
        return self.reason == R.READY

    @property
    def reconciling(self) -> bool:
        """Work is under way or scheduled (kstatus Reconciling)."""
        return self.action is not Action.NONE or self.state in (
            ServiceState.PENDING_STARTUP,
            ServiceState.PENDING_SHUTDOWN,
        )


def exited(obs: Observation) -> bool:
    """A run happened and ended (as opposed to nothing ever started)."""
    return not obs.running and (
        obs.exit_code is not None or obs.finished_at is not None or obs.state is ServiceState.ERROR
    )


def run_end_of(obs: Observation) -> LastRun | None:
    """How the run the runtime reports ended, if it reports one."""
    if not exited(obs):
        return None
    ok = obs.exit_code == 0 and obs.state is not ServiceState.ERROR
    return LastRun(RunEnd.SUCCEEDED if ok else RunEnd.FAILED, obs.reason, obs.message)


def restarts(policy: RestartPolicy, last: LastRun) -> bool:
    """The table, plus: a start that waits for an input (a Secret, the engine, a free
    port) is retried whatever the policy, since nothing has run yet."""
    if last.end is RunEnd.START_FAILED and last.reason in R.WAITING_FOR_INPUT:
        return True
    if last.end is RunEnd.START_FAILED and last.reason in R.NEEDS_A_HUMAN:
        return False
    return RESTARTS[(policy, last.end)]


def should_restart(policy: RestartPolicy, obs: Observation) -> bool:
    """Kubernetes restartPolicy semantics applied to an ended run the runtime reports."""
    last = run_end_of(obs) or LastRun(RunEnd.FAILED)
    return restarts(policy, last)


def waiting_reason(last: LastRun) -> str:
    """What Ready says while the back-off runs: kubelet's words where it has them."""
    if last.reason in R.PULL_FAILURES:
        return R.IMAGE_PULL_BACK_OFF
    if last.end in (RunEnd.KILLED, RunEnd.SUCCEEDED) or last.reason in R.GENERIC_EXITS:
        return R.CRASH_LOOP_BACK_OFF
    # A diagnosed failure keeps its own reason (TerraformSyntaxError, CommandNotFound...).
    return last.reason


def terminal(last: LastRun) -> Decision:
    """A run that ended and will not be started again."""
    if last.end is RunEnd.SUCCEEDED:
        return Decision(Action.NONE, ServiceState.INACTIVE, R.COMPLETED, last.message)
    if last.end is RunEnd.KILLED:
        return Decision(Action.NONE, ServiceState.ERROR, R.UNHEALTHY, last.message, stalled=True)
    return Decision(
        Action.NONE, ServiceState.ERROR, last.reason or R.FAILED, last.message, stalled=True
    )


def decide(
    admin: AdminState,
    obs: Observation,
    health: HealthState,
    probed: bool,
    policy: RestartPolicy,
    restart_due: bool,
    startup_expired: bool,
    last_run: LastRun | None = None,
    update_pending: bool = False,
) -> Decision:
    """Next action and the status to show.

    ``probed``: the service has an endpoint whose health decides readiness.
    ``restart_due``: the back-off after the last ended run has elapsed.
    ``last_run``: how the last run ended as the engine recorded it (start failures and
    Steward's own stops leave nothing for the runtime to report); a run the runtime
    reports as ended takes precedence.
    ``startup_expired``: probes have failed longer than the startup allowance.
    ``update_pending``: a changed spec the runtime converges in place (a Terraform
    re-apply) is waiting: start it now, running or not.
    """
    if admin is AdminState.INACTIVE:
        if obs.running:
            return Decision(Action.STOP, ServiceState.PENDING_SHUTDOWN, R.STOPPING)
        return Decision(Action.NONE, ServiceState.INACTIVE, R.STOPPED, "adminState is inactive")

    if update_pending:
        return Decision(Action.START, ServiceState.PENDING_STARTUP, R.UPDATING)

    if obs.running:
        if not probed:
            if obs.state is ServiceState.PENDING_STARTUP:
                return Decision(Action.NONE, ServiceState.PENDING_STARTUP, R.STARTING, obs.message)
            return Decision(Action.NONE, ServiceState.ACTIVE, R.READY, obs.message)
        if health is HealthState.HEALTHY:
            return Decision(Action.NONE, ServiceState.ACTIVE, R.READY)
        if health is HealthState.UNHEALTHY or startup_expired:
            killed = LastRun(RunEnd.KILLED, R.UNHEALTHY)
            if not restarts(policy, killed):
                return Decision(Action.STOP, ServiceState.ERROR, R.UNHEALTHY, stalled=True)
            return Decision(Action.RESTART, ServiceState.ERROR, R.UNHEALTHY)
        return Decision(Action.NONE, ServiceState.PENDING_STARTUP, R.STARTING)

    last = run_end_of(obs) or last_run
    if last is None:
        return Decision(Action.START, ServiceState.PENDING_STARTUP, R.STARTING)
    if not restarts(policy, last):
        return terminal(last)
    if restart_due:
        return Decision(Action.START, ServiceState.PENDING_STARTUP, R.RESTARTING, last.message)
    return Decision(Action.WAIT, ServiceState.ERROR, waiting_reason(last), last.message)
