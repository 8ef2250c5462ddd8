"""What a sandbox is: who a service's processes run as, in which environment, with what limits.

Carried by ``RuntimeContext.sandbox``; None keeps library and local behaviour
(the caller's uid and environment, no limits). Knows uids and cgroups, never
Kubernetes: the engine turns policy and spec into one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CGROUP_PARENT = "steward"


@dataclass(frozen=True)
class Limits:
    """Resource limits; None means unlimited (for ceilings: no ceiling)."""

    memory_bytes: int | None = None
    cpu_millicores: int | None = None
    pids: int | None = None

    def capped(self, ceiling: Limits) -> Limits:
        """Each limit no higher than the ceiling's; unset ones take the ceiling (a default)."""

        def cap(value: int | None, top: int | None) -> int | None:
            if value is None:
                return top
            return value if top is None else min(value, top)

        return Limits(
            memory_bytes=cap(self.memory_bytes, ceiling.memory_bytes),
            cpu_millicores=cap(self.cpu_millicores, ceiling.cpu_millicores),
            pids=cap(self.pids, ceiling.pids),
        )

    @property
    def empty(self) -> bool:
        return self.memory_bytes is None and self.cpu_millicores is None and self.pids is None

    def describe(self) -> dict[str, int]:
        out = {"memoryBytes": self.memory_bytes, "cpuMillicores": self.cpu_millicores}
        out["pids"] = self.pids
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Sandbox:
    """A service's own identity and limits (after systemd's DynamicUser and a Pod's limits)."""

    uid: int
    gid: int
    clean_env: bool = True
    """Only the spec's resolved env plus PATH, HOME, LANG and Steward's own STEWARD_* ones."""
    limits: Limits = field(default_factory=Limits)
    """Ceilings: a spec's ``resources`` are capped by these, and unset ones default to them."""
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    """A cgroup name under the operator's own cgroup of each controller (v1) or unified (v2)."""
    require_limits: bool = False
    """Refuse to start (LimitsUnavailable) when cgroups cannot be used."""
    state_root: Path | None = None
    """The operator's state directory: its directories between here and a service's runtime
    dir are made traversable but not listable (0711), so a service reaches only its own."""
