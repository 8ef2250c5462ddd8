"""The sandbox a service runs in: its own uid, a clean environment, a cgroup with limits.

Shared by the daemon and Terraform runtimes (beside ``base``, not in a flavor):
``model`` (Sandbox, Limits), ``uid`` (UidAllocator), ``env``, ``cgroups``,
``fs`` (directory layout and modes), ``spawn`` (a child held until it is in its cgroup).
"""

from steward.runtimes.sandbox.model import DEFAULT_CGROUP_PARENT, DEFAULT_PATH, Limits, Sandbox
from steward.runtimes.sandbox.uid import UidAllocator, UidRangeExhausted

__all__ = [
    "DEFAULT_CGROUP_PARENT",
    "DEFAULT_PATH",
    "Limits",
    "Sandbox",
    "UidAllocator",
    "UidRangeExhausted",
]
