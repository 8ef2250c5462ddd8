"""Placement: which StewardNode a ManagedService is bound to, and the binding's epoch. Pure.

kube-scheduler's two phases, with its words. **Filter**: :data:`FILTERS`, run in
order; a host is out at the first filter it fails, and the reasons are counted
over all hosts into one message ("0/3 nodes are available: 1 node(s) had
untolerated taint {gpu: true}, 2 node(s) didn't match node selector.").
**Score**: fewer untolerated PreferNoSchedule taints first, then the strategy
(``Spread``: least allocated, ``Binpack``: most allocated), then the name, so
the same inputs always give the same host.

A pin (``spec.placement.nodeName``) is a Pod's ``nodeName``: the scheduler is
bypassed and only what kubelet would still refuse at admission is checked —
node selector, NoExecute taints, the runtime, resources. A pinned service is
bound to its host even while the host is not Ready, unschedulable or tainted
NoSchedule (the agent starts it when it can; moving it is failover's business,
and a pin never moves). A pin to a host that does not exist is not bound.

``place`` decides for a service that is not bound; a bound service stays where
it is (drain and failover move services, not placement). The epoch is the
binding's fencing token: :func:`next_binding` raises it on every change of
host, :func:`is_current` tells a write of the current binding from a stale one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from steward.api import reasons as R
from steward.api.container import parse_quantity
from steward.api.flavors import NAMES
from steward.api.node import NODE_READY, RUNTIME_CONDITIONS, SERVICES, StewardNode
from steward.api.placement import (
    Failover,
    Placement,
    PlacementStrategy,
    Toleration,
    requests_of,
)
from steward.api.status import Binding

NOT_READY = "node(s) were not ready"
UNSCHEDULABLE_NODE = "node(s) were unschedulable"
SELECTOR_MISMATCH = "node(s) didn't match node selector"
TOO_MANY_SERVICES = f"Too many {SERVICES}"


def untolerated_taint(key: str, value: str) -> str:
    return f"node(s) had untolerated taint {{{key}: {value}}}"


def runtime_not_ready(flavor: str, condition: str) -> str:
    return f"node(s) didn't have the {flavor} runtime ready ({condition} is not True)"


def insufficient(resource: str) -> str:
    return TOO_MANY_SERVICES if resource == SERVICES else f"Insufficient {resource}"


@dataclass(frozen=True)
class Bound:
    """A service already bound to a host, and what it takes there."""

    service: str
    """namespace/name."""
    node: str
    requests: Mapping[str, Decimal]
    failover: Failover = field(default_factory=Failover)
    pinned: bool = False

    @classmethod
    def of(cls, service: str, node: str, placement: Placement | None) -> Bound:
        if placement is None:
            return cls(service, node, requests_of(None))
        return cls(
            service,
            node,
            requests_of(placement),
            placement.failover,
            placement.node_name is not None,
        )


@dataclass(frozen=True)
class Ask:
    """One service's placement, as the filters read it."""

    flavor: str
    requests: Mapping[str, Decimal]
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    pinned: bool = False

    @classmethod
    def of(cls, placement: Placement | None, flavor: str) -> Ask:
        if flavor not in NAMES:
            raise ValueError(f"unknown flavor {flavor!r}")
        p = placement or Placement()
        return cls(
            flavor=flavor,
            requests=requests_of(placement),
            node_selector=dict(p.node_selector),
            tolerations=tuple(p.tolerations),
            pinned=p.node_name is not None,
        )


@dataclass(frozen=True)
class PlacementDecision:
    """The host to bind to, or why there is none (the Scheduled condition's message)."""

    node: str | None
    reason: str
    """``Scheduled`` or ``Unschedulable`` (a Pod's PodScheduled reasons)."""
    message: str
    failures: Mapping[str, int] = field(default_factory=dict)
    """Why hosts were filtered out: reason -> how many hosts."""

    @property
    def schedulable(self) -> bool:
        return self.node is not None


Usage = Mapping[str, Decimal]
Filter = Callable[[StewardNode, Ask, Usage], list[str]]


def allocatable(node: StewardNode) -> dict[str, Decimal]:
    """The host's allocatable as numbers; a value that is no quantity counts as nothing."""
    out: dict[str, Decimal] = {}
    for name, text in node.status.allocatable.items():
        try:
            out[name] = parse_quantity(str(text))
        except ValueError:
            out[name] = Decimal(0)
    return out


def usage(bindings: Iterable[Bound], exclude: str = "") -> dict[str, dict[str, Decimal]]:
    """What is bound on each host (the service being placed excluded), per resource."""
    out: dict[str, dict[str, Decimal]] = {}
    for b in bindings:
        if b.service == exclude:
            continue
        used = out.setdefault(b.node, {})
        for name, amount in b.requests.items():
            used[name] = used.get(name, Decimal(0)) + amount
    return out


def _ready(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    ready = node.status.condition(NODE_READY)
    return [] if ready is not None and ready.status == "True" else [NOT_READY]


def _schedulable(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    return [UNSCHEDULABLE_NODE] if node.spec.unschedulable else []


def _taints(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    # kubelet admits a nodeName pod past NoSchedule taints but not past NoExecute ones.
    effects = ("NoExecute",) if ask.pinned else ("NoSchedule", "NoExecute")
    for taint in node.spec.taints:
        if taint.effect in effects and not _tolerated(taint.key, taint.value, taint.effect, ask):
            return [untolerated_taint(taint.key, taint.value)]
    return []


def _selector(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    labels = node.metadata.labels
    ok = all(labels.get(k) == v for k, v in ask.node_selector.items())
    return [] if ok else [SELECTOR_MISMATCH]


def _runtime(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    condition = RUNTIME_CONDITIONS.get(ask.flavor)
    if condition is None:
        return []  # a daemon needs nothing but the host
    found = node.status.condition(condition)
    return (
        []
        if found is not None and found.status == "True"
        else [runtime_not_ready(ask.flavor, condition)]
    )


def _resources(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    # Like NodeResourcesFit: every resource that does not fit is a reason of its own.
    alloc = allocatable(node)
    out = []
    for name, amount in ask.requests.items():
        if amount <= 0:
            continue
        free = alloc.get(name, Decimal(0)) - used.get(name, Decimal(0))
        if amount > free:
            out.append(insufficient(name))
    return sorted(out)


FILTERS: tuple[tuple[str, Filter, bool], ...] = (
    ("Ready", _ready, False),
    ("Unschedulable", _schedulable, False),
    ("TaintToleration", _taints, True),
    ("NodeSelector", _selector, True),
    ("Runtime", _runtime, True),
    ("NodeResourcesFit", _resources, True),
)
"""(name, filter, checked for a pin), in order. The third column is kubelet's admission: what a
Pod with ``nodeName`` still has to pass (NodeAffinity, NoExecute taints, resources, a runtime
that exists); readiness, cordon and NoSchedule taints are the scheduler's alone."""


def _tolerated(key: str, value: str, effect: str, ask: Ask) -> bool:
    return any(t.tolerates(key, value, effect) for t in ask.tolerations)


def failures(node: StewardNode, ask: Ask, used: Usage) -> list[str]:
    """Why the host cannot take the service: the first failing filter's reasons (none: it fits)."""
    for _, check, for_pins in FILTERS:
        if ask.pinned and not for_pins:
            continue
        found = check(node, ask, used)
        if found:
            return found
    return []


def allocated(node: StewardNode, ask: Ask, used: Usage) -> Fraction:
    """The mean allocated fraction of the resources the service requests, once it is there."""
    alloc = allocatable(node)
    parts = []
    for name, amount in ask.requests.items():
        total = alloc.get(name, Decimal(0))
        taken = used.get(name, Decimal(0)) + amount
        parts.append(Fraction(taken) / Fraction(total) if total > 0 else Fraction(0))
    return sum(parts, Fraction(0)) / len(parts) if parts else Fraction(0)


def _preferred_against(node: StewardNode, ask: Ask) -> int:
    return sum(
        1
        for t in node.spec.taints
        if t.effect == "PreferNoSchedule" and not _tolerated(t.key, t.value, t.effect, ask)
    )


def unavailable_message(total: int, counts: Mapping[str, int], pinned: str | None = None) -> str:
    """kube-scheduler's FitError text: "0/N nodes are available: <count> <reason>, ...".

    Sorted as kube-scheduler sorts them (the "<count> <reason>" strings).
    """
    head = f"0/{total} nodes are available"
    if pinned is not None:
        head += f" (pinned to {pinned} by spec.placement.nodeName)"
    if not counts:
        return f"{head}: no StewardNodes are registered." if total == 0 else f"{head}."
    return f"{head}: {', '.join(sorted(f'{n} {r}' for r, n in counts.items()))}."


def place(
    nodes: Sequence[StewardNode],
    bindings: Iterable[Bound],
    placement: Placement | None,
    flavor: str,
    service: str = "",
) -> PlacementDecision:
    """The host to bind an unbound service to, or Unschedulable with every host's reason.

    ``bindings`` are the services bound now (``service``'s own entry, if any, is ignored).
    """
    ask = Ask.of(placement, flavor)
    used = usage(bindings, exclude=service)
    pin = placement.node_name if placement is not None else None
    candidates = [n for n in nodes if pin is None or n.name == pin]
    if pin is not None and not candidates:
        message = f"spec.placement.nodeName: StewardNode {pin} does not exist."
        return PlacementDecision(None, R.UNSCHEDULABLE, message, {})
    counts: Counter[str] = Counter()
    fitting = []
    for node in candidates:
        here = used.get(node.name, {})
        found = failures(node, ask, here)
        counts.update(found)
        if not found:
            fitting.append(node)
    if not fitting:
        message = unavailable_message(len(candidates), counts, pin)
        return PlacementDecision(None, R.UNSCHEDULABLE, message, dict(counts))
    binpack = placement is not None and placement.strategy is PlacementStrategy.BINPACK

    def rank(node: StewardNode) -> tuple[int, Fraction, str]:
        fraction = allocated(node, ask, used.get(node.name, {}))
        return (_preferred_against(node, ask), -fraction if binpack else fraction, node.name)

    best = min(fitting, key=rank)
    return PlacementDecision(best.name, R.SCHEDULED, f"assigned to {best.name}", dict(counts))


def next_binding(previous: Binding | None, node: str, now: datetime) -> Binding:
    """The binding to ``node``: the same host keeps its epoch (and boundAt), any other raises it."""
    if previous is not None and previous.node_name == node:
        return previous
    epoch = previous.epoch + 1 if previous is not None else 1
    fenced = previous.fenced_nodes if previous is not None else None
    return Binding(node_name=node, epoch=epoch, bound_at=now, fenced_nodes=fenced)


def unbinding(previous: Binding | None, now: datetime) -> Binding | None:
    """No host: the epoch is raised too (the old host's writes become stale) and kept. A
    clean unbinding (the host releases it itself) forgets the fenced hosts."""
    if previous is None or previous.node_name is None:
        return previous
    return Binding(node_name=None, epoch=previous.epoch + 1, bound_at=now)


def fenced_unbinding(previous: Binding, now: datetime) -> Binding:
    """Unbound on behalf of a fenced host: the host joins ``fencedNodes`` (newest last)."""
    moved = unbinding(previous, now)
    assert moved is not None and previous.node_name is not None
    hosts = [h for h in previous.fenced_nodes or () if h != previous.node_name]
    return moved.model_copy(update={"fenced_nodes": [*hosts, previous.node_name][-16:]})


def is_current(binding: Binding | None, node: str, epoch: int) -> bool:
    """Whether a write presenting (node, epoch) comes from the current binding.

    The epoch decides (each binding has its own); the host must agree too, so a bug that
    presents another host's epoch is refused rather than trusted.
    """
    return (
        binding is not None
        and binding.node_name is not None
        and binding.epoch == epoch
        and binding.node_name == node
    )
