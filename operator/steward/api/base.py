r"""Shared pydantic base: camelCase on the wire, snake_case in Python.

The models here become the CRD's OpenAPI schema, so every field carries a
description and unknown keys are rejected (Kubernetes would prune them
silently; a library user deserves an error instead).

Patterns are written for Python's ``re`` and end in ``\Z`` (``$`` would let a
trailing newline through); :func:`re2` gives the form the API server's RE2 reads.
Python's engine, not pydantic's Rust one: each pattern compiled once (``re``'s
cache) instead of once per model that embeds it, which was 12 MB of every process.
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
        regex_engine="python-re",
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as a user would write it in YAML (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def re2(pattern: str) -> str:
    """A pattern of these models as the API server reads it (RE2, CEL ``matches``): there
    ``$`` is the end of the text, Python's ``\\Z``."""
    return pattern.replace("\\Z", "$")


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
