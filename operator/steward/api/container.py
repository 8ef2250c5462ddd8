"""Spec of a Docker container (ZenML's ContainerService). Filled by the container runtime."""

from __future__ import annotations

from pydantic import Field

from steward.api.base import CamelModel


class ContainerSpec(CamelModel):
    """A container run on the local Docker engine."""

    image: str = Field(min_length=1, max_length=1024, description="Image reference.")
