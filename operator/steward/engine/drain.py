"""`steward drain NODE`: what moves off a host that is still alive, and when it is drained.

Like ``kubectl drain``: the host is cordoned first (``spec.unschedulable``), then each
service bound to it is unbound (epoch + 1, *not* released). The host's agent is alive, so
the move is the ordinary handshake: its agent stops the copy and writes ``releasedEpoch``,
and only then does the controller bind it elsewhere; a drain never runs two copies, whatever
the service's failover policy. A service pinned to the host (``spec.placement.nodeName``)
cannot move, as a DaemonSet's pod cannot: it is left running and named, and the drain fails
unless told to ignore pinned services (kubectl's ``--ignore-daemonsets``). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from steward.api.status import Binding
from steward.engine.binding import released
from steward.engine.placement import unbinding


@dataclass(frozen=True)
class OnHost:
    """One service as the drain reads it."""

    key: str
    """namespace/name"""
    binding: Binding | None
    pinned: bool = False
    """``spec.placement.nodeName`` names a host: it never moves."""
    deleting: bool = False


@dataclass(frozen=True)
class Plan:
    move: dict[str, Binding] = field(default_factory=dict)
    """key -> the unbinding to write (the epoch the host held + 1)."""
    pinned: list[str] = field(default_factory=list)
    """Left on the host (pinned)."""


def plan(node: str, services: Iterable[OnHost], now: datetime) -> Plan:
    """What to unbind from ``node``: every service bound to it but those pinned there.

    A service being deleted is left to its finalizer (the agent stops it anyway); one bound
    elsewhere or already unbound is not the drain's.
    """
    out = Plan()
    for svc in sorted(services, key=lambda s: s.key):
        b = svc.binding
        if b is None or b.node_name != node or svc.deleting:
            continue
        if svc.pinned:
            out.pinned.append(svc.key)
            continue
        new = unbinding(b, now)
        assert new is not None
        out.move[svc.key] = new
    return out


def left_host(node: str, written_epoch: int, binding: Binding | None) -> bool:
    """Whether a service the drain unbound (to ``written_epoch``) is off ``node``: its agent
    released it, or the controller bound it again (only ever after that release), or someone
    else moved it on meanwhile (a later epoch, on another host or none)."""
    if binding is None:
        return True
    if binding.epoch > written_epoch:
        return binding.node_name != node
    return binding.epoch == written_epoch and binding.node_name is None and released(binding)
