"""What the placement and binding tables (tests/unit) share: the clock, and StewardNodes."""

from __future__ import annotations

from datetime import UTC, datetime

from steward.api.node import StewardNode

__all__ = ["ALLOC", "T0", "steward_node"]

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALLOC = {"cpu": "2", "memory": "4Gi", "services": "10"}
"""A host's allocatable by default."""


def steward_node(
    name: str,
    *,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    alloc: dict[str, str] | None = None,
    docker: str | None = "True",
    terraform: str | None = "True",
) -> StewardNode:
    """A StewardNode as the API returns it; a condition whose status is None is absent."""
    conditions = [
        {"type": t, "status": s}
        for t, s in (("Ready", ready), ("DockerReady", docker), ("TerraformReady", terraform))
        if s is not None
    ]
    return StewardNode.parse(
        {
            "metadata": {"name": name, "labels": labels or {}, "uid": "u-1"},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"allocatable": ALLOC if alloc is None else alloc, "conditions": conditions},
        }
    )
