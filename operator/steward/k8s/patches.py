"""Status patches: JSON merge patches of what changed, ignoring per-probe noise."""

from __future__ import annotations

from typing import Any

VOLATILE_HEALTH = ("lastProbeTime", "latencySeconds", "consecutiveSuccesses")


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch


def significant(status: dict[str, Any]) -> dict[str, Any]:
    """The status without fields that change on every probe (they ride along real changes)."""
    out = dict(status)
    health = dict(out.get("health") or {})
    for key in VOLATILE_HEALTH:
        health.pop(key, None)
    out["health"] = health
    return out
