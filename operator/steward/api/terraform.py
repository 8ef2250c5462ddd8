"""Spec of a Terraform apply (ZenML's TerraformService). Filled by the terraform runtime."""

from __future__ import annotations

from pydantic import Field

from steward.api.base import CamelModel


class TerraformModule(CamelModel):
    """Where the Terraform configuration comes from."""

    inline: dict[str, str] | None = Field(default=None, description="filename -> content.")
    path: str | None = Field(default=None, description="A directory holding the module.")


class TerraformSpec(CamelModel):
    """A Terraform module applied, observed for drift and destroyed on stop."""

    module: TerraformModule = Field(description="The module to apply.")
