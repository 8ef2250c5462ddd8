"""Small building blocks shared by the runtime specs."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel

ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*\Z"
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z"


class KeySelector(CamelModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the object.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the object's data.")
    optional: bool = Field(default=False, description="Tolerate a missing object or key.")


class EnvVarSource(CamelModel):
    """Where an environment value comes from (resolved by the operator)."""

    model_config = cel(
        (
            "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            "valueFrom: set exactly one of secretKeyRef or configMapKeyRef",
        ),
    )

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(CamelModel):
    """One environment variable, Kubernetes style; `$(VAR)` references expand."""

    model_config = cel(
        (
            "!(has(self.value) && has(self.valueFrom))",
            "env: set value or valueFrom, not both",
        ),
    )

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_NAME_PATTERN, description="Variable name."
    )
    value: str | None = Field(
        default=None, max_length=65536, description="Literal value; `$(VAR)` expands."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret or ConfigMap key."
    )

    @model_validator(mode="after")
    def _not_both(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        return self


class PythonCallable(CamelModel):
    """A Python callable run in a fresh interpreter (the seed's `run()` method)."""

    callable: str = Field(
        pattern=CALLABLE_PATTERN,
        max_length=512,
        description="`package.module:function` to import and call.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments (JSON values); string values expand `$(VAR)`.",
    )
