"""Runtimes: one package per flavor, all behind ``steward.runtimes.base.Runtime``.

``daemon/``, ``container/`` and ``terraform/`` each export their runtime class
and import nothing of one another; what more than one flavor uses (process
bookkeeping, log files, ``$(VAR)`` expansion) sits here beside ``base``. The
engine reaches a flavor only through ``registry.make_runtime`` and reads what
it can do from ``Runtime.capabilities``.
"""

from steward.runtimes.base import (
    Adoption,
    Capabilities,
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
    "Capabilities",
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
