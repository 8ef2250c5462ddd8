"""The whole ManagedService object, as kubectl-applied or read from a file."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, model_validator

from steward.api.base import CamelModel
from steward.api.spec import ManagedServiceSpec
from steward.api.status import ManagedServiceStatus

API_GROUP = "steward.dev"
API_VERSION = "v1alpha1"
KIND = "ManagedService"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"


SERVICE_NAME_MESSAGE = (
    "metadata.name must start with a letter under endpoint.expose: Cluster "
    "(it names the Service, a DNS-1035 label)"
)


class ObjectMeta(CamelModel):
    """The part of metadata Steward reads; anything else is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL, description="Name.")
    namespace: str = Field(
        default="default",
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Namespace.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    generation: int | None = Field(default=None, description="Spec generation.")
    uid: str | None = Field(default=None, description="Object UID.")


class ManagedService(CamelModel):
    """A service Steward runs: a daemon, a container or a Terraform apply."""

    api_version: Literal["steward.dev/v1alpha1"] = Field(
        default="steward.dev/v1alpha1", description="steward.dev/v1alpha1"
    )
    kind: Literal["ManagedService"] = Field(default="ManagedService", description="ManagedService")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: ManagedServiceSpec = Field(description="Desired state.")
    status: ManagedServiceStatus | None = Field(default=None, description="Observed state.")

    @model_validator(mode="after")
    def _service_name(self) -> ManagedService:
        ep = self.spec.endpoint
        if ep is not None and ep.exposed and not self.metadata.name[:1].isalpha():
            raise ValueError(SERVICE_NAME_MESSAGE)
        return self

    @property
    def key(self) -> str:
        """namespace/name, the identity used everywhere."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @classmethod
    def parse(cls, data: dict[str, Any] | str | ManagedService) -> ManagedService:
        """Accept a dict, a YAML/JSON string or an instance; raise ValidationError naming the field."""
        if isinstance(data, ManagedService):
            return data
        if isinstance(data, str):
            data = yaml.safe_load(data)
        return cls.model_validate(data)
