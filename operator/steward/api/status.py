"""What Steward observed: written to the status subresource (or the local state dir)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel
from steward.api.endpoint import EndpointProtocol
from steward.api.flavors import one_of
from steward.api.state import ServiceStatus


def utcnow() -> datetime:
    """Timezone-aware now, second precision as Kubernetes stores it."""
    return datetime.now(UTC).replace(microsecond=0)


def raw_condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any]:
    """The condition of ``type_`` in a status as the API holds it (camelCase dicts: a watch
    event's body, a persisted status.json); {} when it has none. Cheaper than parsing the
    whole status into :class:`ManagedServiceStatus` for one field."""
    for c in (status or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return {}


class HealthState(StrEnum):
    """Result of the probes so far."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class EndpointStatus(CamelModel):
    """Where the running service can be reached."""

    protocol: EndpointProtocol | None = Field(default=None, description="tcp, http or https.")
    host: str | None = Field(default=None, description="Host the service is reached on.")
    port: int | None = Field(default=None, description="Port in use (also the last one used).")
    uri: str | None = Field(
        default=None, description="protocol://host:port, or a Terraform output."
    )
    health_url: str | None = Field(default=None, description="URL the HTTP probe requests.")
    host_uri: str | None = Field(
        default=None,
        description="expose: Cluster: protocol://host-address:port on the host that runs it "
        "(uri then names the Service).",
    )


class HealthStatus(CamelModel):
    """Probe results, Kubernetes-style thresholds applied."""

    state: HealthState = Field(
        default=HealthState.UNKNOWN, description="unknown, healthy, unhealthy."
    )
    consecutive_failures: int = Field(default=0, description="Failed probes in a row.")
    consecutive_successes: int = Field(default=0, description="Successful probes in a row.")
    last_probe_time: datetime | None = Field(default=None, description="When the last probe ran.")
    latency_seconds: float | None = Field(default=None, description="Duration of the last probe.")
    message: str = Field(default="", description="Why the last probe failed, if it did.")


class Condition(CamelModel):
    """A Kubernetes condition (metav1.Condition shape)."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed for."
    )


IN_FORCE_MESSAGE = (
    "status.placement.releasedEpoch: a binding in force cannot be released (its host still "
    "holds it); only an unbinding or a later binding can follow a release"
)
STALE_EPOCH_MESSAGE = (
    "status.placement.reportedEpoch is not status.placement.epoch: this write is for a binding "
    "that is over (a stale epoch)"
)
"""The API server's answer (422) to a status write from a host the service is no longer bound to."""


class Binding(CamelModel):
    """Which host runs the service: ``status.placement``, written by the controller alone.

    It lives in status, not spec (where a Pod keeps its nodeName), because Steward never writes
    spec (GitOps tools own it); a user pin is ``spec.placement.nodeName``. ``epoch`` is the
    fencing token: every new binding (and every unbinding) raises it, so an agent that still
    presents an older epoch is writing for a binding that is over and is refused.
    """

    model_config = cel(
        (
            "!has(oldSelf.epoch) || (has(self.epoch) && self.epoch >= oldSelf.epoch)",
            "status.placement.epoch never decreases",
        ),
        (
            "!has(self.reportedEpoch) || (has(self.epoch) && self.reportedEpoch == self.epoch)",
            STALE_EPOCH_MESSAGE,
        ),
        (
            "!has(self.releasedEpoch) || (has(self.epoch) && self.releasedEpoch <= self.epoch)",
            "status.placement.releasedEpoch: only a binding that was made can be released",
        ),
        (
            "!has(oldSelf.releasedEpoch) "
            "|| (has(self.releasedEpoch) && self.releasedEpoch >= oldSelf.releasedEpoch)",
            "status.placement.releasedEpoch never decreases",
        ),
        (
            "!has(self.nodeName) || !has(self.releasedEpoch) || self.releasedEpoch < self.epoch",
            IN_FORCE_MESSAGE,
        ),
    )

    node_name: str | None = Field(
        default=None,
        max_length=253,
        description="The StewardNode the service is bound to; unset: unbound (the epoch stays, "
        "so the next binding still gets a higher one).",
    )
    epoch: int = Field(
        default=0,
        ge=0,
        description="Fencing token: raised by every change of nodeName, kept otherwise; agents "
        "present it with what they write.",
    )
    bound_at: datetime | None = Field(
        default=None, description="When nodeName (and the epoch) last changed."
    )
    reported_epoch: int | None = Field(
        default=None,
        ge=0,
        description="The epoch of the binding the agent writing this status holds: every "
        "agent write presents it, and the API server refuses a write whose reportedEpoch is "
        "not `epoch` (the binding it was made for is over). Cleared by every new binding.",
    )
    released_epoch: int | None = Field(
        default=None,
        ge=0,
        description="The host of this epoch (and of every earlier one) has stopped the "
        "service: written by that host's agent once it stopped it. The controller binds a "
        "service that had a host only once it was released, so no two hosts run it at once.",
    )

    fenced_nodes: list[str] | None = Field(
        default=None,
        max_length=16,
        description="Hosts the controller released this service on behalf of after fencing "
        "them (failover), since it last moved cleanly: the next host may break a Terraform "
        "state lock one of them left before this binding began. Cleared by a clean unbinding.",
    )

    @model_validator(mode="after")
    def _fenced(self) -> Binding:
        if self.reported_epoch is not None and self.reported_epoch != self.epoch:
            raise ValueError(STALE_EPOCH_MESSAGE)
        if self.released_epoch is not None and self.released_epoch > self.epoch:
            raise ValueError(
                "status.placement.releasedEpoch: only a binding that was made can be released"
            )
        if (
            self.node_name is not None
            and self.released_epoch is not None
            and self.released_epoch >= self.epoch
        ):
            raise ValueError(IN_FORCE_MESSAGE)
        return self


class ManagedServiceStatus(ServiceStatus):
    """Operational status of a ManagedService."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation last acted upon."
    )
    flavor: str | None = Field(default=None, description=f"{one_of()}.")
    placement: Binding | None = Field(
        default=None, description="The host the controller bound the service to, and the epoch."
    )
    endpoint: EndpointStatus = Field(default_factory=EndpointStatus, description="Endpoint.")
    health: HealthStatus = Field(default_factory=HealthStatus, description="Probe results.")
    restarts: int = Field(default=0, description="Restarts done by Steward.")
    last_exit_code: int | None = Field(default=None, description="Exit code of the last run.")
    started_at: datetime | None = Field(default=None, description="When the current run started.")
    finished_at: datetime | None = Field(default=None, description="When the last run ended.")
    next_restart_at: datetime | None = Field(
        default=None, description="When a crash-looping service is started again."
    )
    runtime: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime details: pid, containerId, Terraform outputs (non-sensitive).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready and friends.")

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if any."""
        return next((c for c in self.conditions if c.type == type_), None)

    def set_condition(
        self,
        type_: str,
        status: Literal["True", "False", "Unknown"],
        reason: str,
        message: str = "",
        observed_generation: int | None = None,
    ) -> bool:
        """Upsert a condition; lastTransitionTime moves only when status flips."""
        current = self.condition(type_)
        if current is None:
            self.conditions = [
                *self.conditions,
                Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    last_transition_time=utcnow(),
                    observed_generation=observed_generation,
                ),
            ]
            return True
        changed = (
            current.status,
            current.reason,
            current.message,
            current.observed_generation,
        ) != (
            status,
            reason,
            message,
            observed_generation,
        )
        if current.status != status:
            current.last_transition_time = utcnow()
        current.status = status
        current.reason = reason
        current.message = message
        current.observed_generation = observed_generation
        return changed
