"""The ManagedService spec: what the user declares."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel
from steward.api.container import ContainerSpec
from steward.api.daemon import DaemonSpec
from steward.api.endpoint import EndpointSpec
from steward.api.flavors import FLAVORS, NAMES, by_name, one_of
from steward.api.placement import Placement
from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.state import AdminState
from steward.api.terraform import TerraformSpec

_FIELDS = tuple(f.field for f in FLAVORS)
_REMOTE = tuple(f.field for f in FLAVORS if not f.listens_on_host)
_EXPOSE_MESSAGE = (
    f"endpoint.expose: Cluster needs a flavor that listens on its host "
    f"({one_of([f.name for f in FLAVORS if f.listens_on_host])})"
)


class DeletionPolicy(StrEnum):
    """What deleting the resource does to what it started."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


class ManagedServiceSpec(CamelModel):
    """Desired state: exactly one of daemon, container or terraform."""

    model_config = cel(
        (
            f"[{', '.join(f'has(self.{f})' for f in _FIELDS)}].filter(x, x).size() == 1",
            f"exactly one of {one_of([f'spec.{f}' for f in _FIELDS])} must be set",
        ),
        (
            "!has(self.endpoint) || !has(self.endpoint.expose) || self.endpoint.expose != 'Cluster'"
            f" || ({' && '.join(f'!has(self.{f})' for f in _REMOTE) or 'true'})",
            _EXPOSE_MESSAGE,
        ),
    )

    admin_state: AdminState = Field(
        default=AdminState.ACTIVE, description="active runs the service; inactive stops it."
    )
    daemon: DaemonSpec | None = Field(default=None, description=by_name("daemon").field_description)
    container: ContainerSpec | None = Field(
        default=None, description=by_name("container").field_description
    )
    terraform: TerraformSpec | None = Field(
        default=None, description=by_name("terraform").field_description
    )
    endpoint: EndpointSpec | None = Field(
        default=None, description="Where the service listens and how it is probed."
    )
    placement: Placement | None = Field(
        default=None,
        description="Which StewardNodes may run the service (nodeName, nodeSelector, "
        "tolerations) and what it needs there (resources.requests); unset: any host that fits.",
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
        chosen = [f.name for f in FLAVORS if getattr(self, f.field) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"spec: set exactly one of {one_of()}"
                + (f" (got {', '.join(chosen)})" if chosen else " (got none)")
            )
        exposed = self.endpoint is not None and self.endpoint.exposed
        if exposed and not by_name(chosen[0]).listens_on_host:
            raise ValueError(_EXPOSE_MESSAGE)
        return self

    @property
    def flavor(self) -> str:
        """daemon, container or terraform."""
        return next(f.name for f in FLAVORS if getattr(self, f.field) is not None)


def _check_catalog() -> None:
    """Every flavor of the catalog is a field of the spec, typed with its model."""
    for f in FLAVORS:
        info = ManagedServiceSpec.model_fields.get(f.field)
        if info is None or info.annotation != (f.model | None):
            raise TypeError(f"ManagedServiceSpec.{f.field} must be {f.model.__name__} | None")
    if len(set(_FIELDS)) != len(NAMES):
        raise TypeError("two flavors share a spec field")


_check_catalog()
