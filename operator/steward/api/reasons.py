"""Condition and Event reasons: the CamelCase words users see in `kubectl get msvc`.

One place for them, like tofu-controller's condition_types.go, so the engine,
the adapters and the docs agree on spelling. Runtime-specific diagnoses
(``TerraformSyntaxError``...) live beside the runtime that makes them.
"""

from __future__ import annotations

from typing import Final

MESSAGE_MAX: Final = 1000
"""Longest condition/Event message written to the API (Kubernetes allows 32 KiB; kubectl shows ~1 line)."""

# Ready=True
READY: Final = "Ready"

# Progress (Ready=False, Reconciling=True)
STARTING: Final = "Starting"
RESTARTING: Final = "Restarting"
STOPPING: Final = "Stopping"
UPDATING: Final = "Updating"
REPLACING: Final = "Replacing"

# At rest (Ready=False, nothing to do)
STOPPED: Final = "Stopped"
COMPLETED: Final = "Completed"
NOT_RUNNING: Final = "NotRunning"

# Waiting out a back-off before the next attempt
CRASH_LOOP_BACK_OFF: Final = "CrashLoopBackOff"
IMAGE_PULL_BACK_OFF: Final = "ImagePullBackOff"

# Failures
FAILED: Final = "Failed"
UNHEALTHY: Final = "Unhealthy"
INVALID_SPEC: Final = "InvalidSpec"
POLICY_DENIED: Final = "PolicyDenied"
START_FAILED: Final = "StartFailed"
STOP_FAILED: Final = "StopFailed"
ADOPT_FAILED: Final = "AdoptFailed"
OBSERVE_FAILED: Final = "ObserveFailed"
RECONCILE_FAILED: Final = "ReconcileFailed"
COMMAND_NOT_FOUND: Final = "CommandNotFound"
PORT_UNAVAILABLE: Final = "PortUnavailable"
PROCESS_EXITED: Final = "ProcessExited"
CONTAINER_EXITED: Final = "ContainerExited"
IMAGE_PULL_FAILED: Final = "ImagePullFailed"
IMAGE_NOT_FOUND: Final = "ImageNotFound"
DOCKER_UNAVAILABLE: Final = "DockerUnavailable"
VALUE_FROM_MISSING: Final = "ValueFromMissing"
VALUE_FROM_UNAVAILABLE: Final = "ValueFromUnavailable"
VARS_FROM_MISSING: Final = "TerraformVarsFromMissing"
VARS_FROM_UNAVAILABLE: Final = "TerraformVarsFromUnavailable"
OUTPUTS_SECRET_FAILED: Final = "OutputsSecretFailed"  # noqa: S105 - a reason, not a secret
OUTPUTS_SECRET_NOT_OWNED: Final = "OutputsSecretNotOwned"  # noqa: S105 - a reason, not a secret
BACKEND_CREDENTIALS_MISSING: Final = "BackendCredentialsMissing"
"""The outputs Secret exists and Steward did not create it for this resource: not written."""

# Runtime diagnoses (what a run or a start ran into)
SANDBOX_UNAVAILABLE: Final = "SandboxUnavailable"
INVALID_WORKING_DIR: Final = "InvalidWorkingDir"
LIMITS_UNAVAILABLE: Final = "LimitsUnavailable"
OOM_KILLED: Final = "OOMKilled"
DRIFT_CHECK_FAILED: Final = "DriftCheckFailed"
INVALID_HOST: Final = "InvalidHost"
INVALID_VOLUME: Final = "InvalidVolume"
PORT_TAKEN: Final = "PortTaken"
NAME_CONFLICT: Final = "NameConflict"
CONTAINER_ERROR: Final = "ContainerError"
PAUSED: Final = "Paused"
CONTAINER_DEAD: Final = "ContainerDead"

# Placement (the Scheduled condition, as a Pod's PodScheduled)
SCHEDULED: Final = "Scheduled"
UNSCHEDULABLE: Final = "Unschedulable"
RELEASE_PENDING: Final = "ReleasePending"
"""Unbound, but the host it had has not stopped it yet: not bound anywhere else until it has."""
FAILED_SCHEDULING: Final = "FailedScheduling"
"""The Event of an unschedulable service (kube-scheduler's)."""
RELEASED: Final = "Released"
"""The Event of a host that stopped its copy because the binding ended."""

# endpoint.expose: Cluster
SERVICE_NAME_TAKEN: Final = "ServiceNameTaken"
"""Warning Event: a Service of the resource's name exists that Steward did not create."""
EXPOSE_FAILED: Final = "ExposeFailed"
"""Warning Event: the Service or EndpointSlice could not be written (e.g. RBAC forbids it)."""

# Failover (a host whose Lease ran out)
NODE_LOST: Final = "NodeLost"
"""Ready=Unknown: the host the service is bound to stopped renewing its Lease."""
NODE_STATUS_UNKNOWN: Final = "NodeStatusUnknown"
"""A StewardNode's Ready=Unknown, written by the controller (the node lifecycle controller's)."""
FAILED_OVER: Final = "FailedOver"
"""The service left a lost host that is fenced (AfterFencing, out-of-service, `steward failover`)."""
FENCED: Final = "Fenced"
"""The host stopped the service itself: its Lease was not renewed in time (AfterFencing)."""
DRAINED: Final = "Drained"
"""`steward drain` unbound the service from its host to move it."""

# Events only
STARTED: Final = "Started"
EXITED: Final = "Exited"
SPEC_CHANGED: Final = "SpecChanged"
ORPHANED: Final = "Orphaned"
FORCE_DELETED: Final = "ForceDeleted"

GENERIC_EXITS: Final = frozenset({"", PROCESS_EXITED, CONTAINER_EXITED, "Error", FAILED, COMPLETED})
"""Exit reasons that say nothing beyond "it ended": shown as CrashLoopBackOff while waiting."""

WAITING_FOR_INPUT: Final = frozenset(
    {
        VALUE_FROM_MISSING,
        VALUE_FROM_UNAVAILABLE,
        VARS_FROM_MISSING,
        VARS_FROM_UNAVAILABLE,
        DOCKER_UNAVAILABLE,
        PORT_UNAVAILABLE,
        BACKEND_CREDENTIALS_MISSING,
    }
)
"""Start failures caused by something outside the spec that may appear later (a Secret,
the engine, a free port). Like kubelet's CreateContainerConfigError they are retried
with back-off whatever the restart policy: no run has happened yet."""

NEEDS_A_HUMAN: Final = frozenset({POLICY_DENIED, INVALID_SPEC})
"""Start failures no retry can mend: the spec (or the admin's policy) must change first.
They are terminal whatever the restart policy (Stalled); a change of either wakes them."""

PULL_FAILURES: Final = frozenset({IMAGE_PULL_FAILED})
"""Shown as ImagePullBackOff while the retry waits, as kubelet does after ErrImagePull."""

# Condition types besides Ready (kstatus: abnormal-true polarity)
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
