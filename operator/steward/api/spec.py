"""The ManagedService spec: what the user declares."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel
from steward.api.container import ContainerSpec
from steward.api.daemon import DaemonSpec
from steward.api.endpoint import EndpointSpec
from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.state import AdminState
from steward.api.terraform import TerraformSpec

FLAVORS = ("daemon", "container", "terraform")


class DeletionPolicy(StrEnum):
    """What deleting the resource does to what it started."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


class ManagedServiceSpec(CamelModel):
    """Desired state: exactly one of daemon, container or terraform."""

    model_config = cel(
        (
            "[has(self.daemon), has(self.container), has(self.terraform)].filter(x, x).size() == 1",
            "exactly one of spec.daemon, spec.container or spec.terraform must be set",
        ),
    )

    admin_state: AdminState = Field(
        default=AdminState.ACTIVE, description="active runs the service; inactive stops it."
    )
    daemon: DaemonSpec | None = Field(default=None, description="Run a local daemon process.")
    container: ContainerSpec | None = Field(default=None, description="Run a Docker container.")
    terraform: TerraformSpec | None = Field(default=None, description="Apply a Terraform module.")
    endpoint: EndpointSpec | None = Field(
        default=None, description="Where the service listens and how it is probed."
    )
    restart_policy: RestartPolicy = Field(
        default=RestartPolicy.ALWAYS, description="Always, OnFailure or Never."
    )
    backoff: BackoffSpec = Field(
        default_factory=BackoffSpec, description="Crash-loop back-off between restarts."
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete stops what the resource started; Orphan leaves it running.",
    )

    @model_validator(mode="after")
    def _exactly_one_flavor(self) -> ManagedServiceSpec:
        chosen = [f for f in FLAVORS if getattr(self, f) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "spec: set exactly one of daemon, container or terraform"
                + (f" (got {', '.join(chosen)})" if chosen else " (got none)")
            )
        return self

    @property
    def flavor(self) -> str:
        """daemon, container or terraform."""
        return next(f for f in FLAVORS if getattr(self, f) is not None)
