"""Shared pydantic base: camelCase on the wire, snake_case in Python.

The models here become the CRD's OpenAPI schema, so every field carries a
description and unknown keys are rejected (Kubernetes would prune them
silently; a library user deserves an error instead).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Base for every API object."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
        use_enum_values=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as a user would write it in YAML (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(*rules: tuple[str, str]) -> ConfigDict:
    """CEL rules (rule, message) carried into the CRD as ``x-kubernetes-validations``.

    The pydantic validators enforce the same rules in library and local mode;
    these make the API server reject the object at admission.
    """
    return ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]
        }
    )
