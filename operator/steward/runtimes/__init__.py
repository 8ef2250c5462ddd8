"""Runtimes: one module per kind of service, all behind ``steward.runtimes.base.Runtime``."""

from steward.runtimes.base import (
    Adoption,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
    ServiceIdentity,
    spec_hash,
)
from steward.runtimes.registry import make_runtime, register_runtime, runtime_class

__all__ = [
    "Adoption",
    "Observation",
    "Runtime",
    "RuntimeContext",
    "RuntimeFailure",
    "ServiceIdentity",
    "make_runtime",
    "register_runtime",
    "runtime_class",
    "spec_hash",
]
