"""The reconciler's decision: given what is wanted and what is seen, what to do next.

Pure: no I/O, no clock; the caller passes ``now``-derived facts in. Every
branch here is a sentence a user could read in the Ready condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from steward.api.restart import RestartPolicy
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState
from steward.runtimes.base import Observation

GENERIC_EXIT_REASONS = frozenset(
    {"", "ProcessExited", "ContainerExited", "Error", "Failed", "Completed"}
)


class Action(StrEnum):
    NONE = "none"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    """Stop now (liveness failure) and start again after the back-off."""
    WAIT = "wait"
    """Crash-looping: nothing to do until the back-off elapses."""


@dataclass(frozen=True)
class Decision:
    action: Action
    state: ServiceState
    reason: str
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.reason == "Ready"


def exited(obs: Observation) -> bool:
    """A run happened and ended (as opposed to nothing ever started)."""
    return not obs.running and (
        obs.exit_code is not None or obs.finished_at is not None or obs.state is ServiceState.ERROR
    )


def should_restart(policy: RestartPolicy, obs: Observation) -> bool:
    """Kubernetes restartPolicy semantics applied to an ended run."""
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return obs.exit_code != 0
    return False


def decide(
    admin: AdminState,
    obs: Observation,
    health: HealthState,
    probed: bool,
    policy: RestartPolicy,
    restart_due: bool,
    startup_expired: bool,
    restart_pending: bool = False,
) -> Decision:
    """Next action and the status to show.

    ``probed``: the service has an endpoint whose health decides readiness.
    ``restart_due``: the crash-loop back-off has elapsed.
    ``restart_pending``: a restart is scheduled (the last run failed or was killed).
    ``startup_expired``: probes have failed longer than the startup allowance.
    """
    if admin is AdminState.INACTIVE:
        if obs.running:
            return Decision(Action.STOP, ServiceState.PENDING_SHUTDOWN, "Stopping")
        return Decision(Action.NONE, ServiceState.INACTIVE, "Stopped", "adminState is inactive")

    if obs.running:
        if not probed:
            if obs.state is ServiceState.PENDING_STARTUP:
                return Decision(Action.NONE, ServiceState.PENDING_STARTUP, "Starting", obs.message)
            return Decision(Action.NONE, ServiceState.ACTIVE, "Ready", obs.message)
        if health is HealthState.HEALTHY:
            return Decision(Action.NONE, ServiceState.ACTIVE, "Ready")
        if health is HealthState.UNHEALTHY or startup_expired:
            if policy is RestartPolicy.NEVER:
                return Decision(Action.STOP, ServiceState.ERROR, "Unhealthy")
            return Decision(Action.RESTART, ServiceState.ERROR, "Unhealthy")
        return Decision(Action.NONE, ServiceState.PENDING_STARTUP, "Starting")

    if restart_pending and not exited(obs):
        # Stopped by Steward itself (liveness failure): restart after the back-off.
        if restart_due:
            return Decision(Action.START, ServiceState.PENDING_STARTUP, "Restarting")
        return Decision(Action.WAIT, ServiceState.ERROR, "CrashLoopBackOff", obs.message)
    if not exited(obs):
        return Decision(Action.START, ServiceState.PENDING_STARTUP, "Starting")
    if not should_restart(policy, obs):
        if obs.exit_code == 0:
            return Decision(Action.NONE, ServiceState.INACTIVE, "Completed", obs.message)
        return Decision(Action.NONE, ServiceState.ERROR, obs.reason or "Failed", obs.message)
    if restart_due:
        return Decision(Action.START, ServiceState.PENDING_STARTUP, "Restarting", obs.message)
    # A plain crash loops like a kubelet container; a diagnosed failure keeps its own
    # reason (TerraformSyntaxError, ImageNotFound...) while the retry waits.
    reason = "CrashLoopBackOff" if obs.reason in GENERIC_EXIT_REASONS else obs.reason
    return Decision(Action.WAIT, ServiceState.ERROR, reason, obs.message)
