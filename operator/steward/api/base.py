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

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

T = TypeVar("T")


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


def lookup(items: Iterable[T], key: Callable[[T], str], wanted: str, what: str) -> T:
    """The item whose ``key`` is ``wanted``; KeyError names ``what`` and lists the known keys."""
    items = tuple(items)
    for item in items:
        if key(item) == wanted:
            return item
    known = ", ".join(key(i) for i in items)
    raise KeyError(f"unknown {what} {wanted!r} (known: {known})")


def name_and_labels(data: dict[str, Any]) -> dict[str, Any]:
    """A cluster-scoped object from the API with only the metadata Steward reads (name and
    labels; the rest is dropped), for ``model_validate``."""
    meta = data.get("metadata") or {}
    return {**data, "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}}}
