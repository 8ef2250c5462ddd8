"""Bindings over time: what the controller does with one service, and what a host does when a
binding ends. Pure; the placement itself (filter, score) is :mod:`steward.engine.placement`.

The controller binds a service that is not bound, and only once no host may still run it:
a service that had a host (``epoch`` > 0, unbound) waits until that host's agent has
*released* it (``status.placement.releasedEpoch``, written once it stopped the service
there), as a StatefulSet's pod is created again only once the old one is gone. So a move is
unbind (epoch + 1) → the old host stops and releases → bind elsewhere (epoch + 2): never two
hosts at once. A host that never answers keeps its service unbound-and-unreleased (until it
returns, or an admin writes ``releasedEpoch``; failover policies come later).

An agent presents the epoch it holds with every status write (``reportedEpoch``); the API
server refuses a write whose epoch is not the current one (a CEL rule), and the agent then
stops its copy (locally: a Terraform apply is interrupted, never destroyed on that path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from steward.api import reasons as R
from steward.api.flavors import FLAVORS
from steward.api.node import StewardNode
from steward.api.placement import Placement
from steward.api.status import Binding, Condition
from steward.engine.placement import Bound, next_binding, place

SCHEDULED = "Scheduled"
"""The condition type (a Pod's PodScheduled)."""

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0
"""Retries of an unschedulable service: 1 s, doubling, at most a minute (kube-scheduler's
podInitialBackoffSeconds is 1; a StewardNode change retries at once anyway)."""
CONFLICT_BACKOFF = 0.2
"""A write that lost a race (409) is decided again almost at once, on a fresh read."""


class Verdict(StrEnum):
    SKIP = "skip"
    """Nothing to decide: bound already, being deleted, or no flavor to place by."""
    WAIT = "wait"
    """Unbound, but its last host has not released it yet."""
    BIND = "bind"
    UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True)
class Decision:
    """What the controller does with one service now."""

    verdict: Verdict
    binding: Binding | None = None
    """The binding to write (BIND)."""
    reason: str = ""
    """The Scheduled condition's reason (and the Event's, see :attr:`event`)."""
    message: str = ""
    failures: Mapping[str, int] | None = None

    @property
    def condition(self) -> tuple[Literal["True", "False"], str, str] | None:
        """The Scheduled condition (status, reason, message); None: leave it as it is."""
        if self.verdict is Verdict.BIND:
            return ("True", R.SCHEDULED, self.message)
        if self.verdict in (Verdict.UNSCHEDULABLE, Verdict.WAIT):
            return ("False", self.reason, self.message)
        return None

    @property
    def event(self) -> tuple[str, str, str] | None:
        """One Event (type, reason, message): kube-scheduler's Scheduled / FailedScheduling."""
        if self.verdict is Verdict.BIND:
            return ("Normal", R.SCHEDULED, self.message)
        if self.verdict is Verdict.UNSCHEDULABLE:
            return ("Warning", R.FAILED_SCHEDULING, self.message)
        return None


def flavor_of(spec: Mapping[str, Any]) -> str | None:
    """The flavor a spec asks for (the CRD allows exactly one); None: none of them."""
    return next((f.name for f in FLAVORS if spec.get(f.field) is not None), None)


def released(binding: Binding | None) -> bool:
    """No host may run the service: never bound, or unbound and released by its last host.

    Unbinding raises the epoch by one (:func:`steward.engine.placement.unbinding`), so the
    last host held ``epoch - 1``.
    """
    if binding is None:
        return True
    if binding.node_name is not None:
        return False
    return binding.epoch == 0 or (binding.released_epoch or 0) >= binding.epoch - 1


def finalizer_removable(binding: Binding | None, finalizers: Iterable[str], finalizer: str) -> bool:
    """A service being deleted that no host runs keeps the agents' ``finalizer`` only until
    the controller removes it (no agent sees a service that is not bound to it)."""
    return finalizer in finalizers and released(binding)


def release_pending_message(binding: Binding) -> str:
    return (
        f"waiting for the host of epoch {binding.epoch - 1} to stop it "
        "(status.placement.releasedEpoch)"
    )


def decide(
    key: str,
    spec: Mapping[str, Any],
    binding: Binding | None,
    deleting: bool,
    nodes: Sequence[StewardNode],
    bindings: Iterable[Bound],
    now: datetime,
) -> Decision:
    """The controller's decision for the service ``key`` (namespace/name).

    ``spec`` is the raw spec (only ``placement`` and the flavor are read: the rest is the
    agent's to judge, as kube-scheduler binds a pod whatever its image); ``bindings`` are the
    services bound now.
    """
    if deleting or (binding is not None and binding.node_name is not None):
        return Decision(Verdict.SKIP)
    flavor = flavor_of(spec)
    if flavor is None:
        return Decision(Verdict.SKIP)
    if not released(binding):
        assert binding is not None
        return Decision(
            Verdict.WAIT, reason=R.RELEASE_PENDING, message=release_pending_message(binding)
        )
    try:
        placement = Placement.model_validate(spec["placement"]) if spec.get("placement") else None
    except ValueError as exc:
        return Decision(
            Verdict.UNSCHEDULABLE, reason=R.UNSCHEDULABLE, message=f"spec.placement: {exc}"
        )
    found = place(nodes, bindings, placement, flavor, service=key)
    if found.node is None:
        return Decision(
            Verdict.UNSCHEDULABLE,
            reason=found.reason,
            message=found.message,
            failures=found.failures,
        )
    return Decision(
        Verdict.BIND,
        binding=next_binding(binding, found.node, now),
        reason=found.reason,
        message=f"Successfully assigned {key} to {found.node}",
    )


def placement_patch(binding: Binding) -> dict[str, Any]:
    """``status.placement`` as a merge patch that makes it exactly ``binding``: an unbinding
    writes ``nodeName: null``, and every new binding clears the agent's ``reportedEpoch``
    (the old host's next write is then refused). ``releasedEpoch`` is the agents' and kept."""
    out = binding.model_dump(
        mode="json", by_alias=True, exclude={"reported_epoch", "released_epoch"}
    )
    return {**out, "reportedEpoch": None}


def backoff(attempt: int) -> float:
    """Seconds before the ``attempt``-th retry (0-based) of an unschedulable service."""
    return float(min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** max(0, attempt)))


def with_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
) -> list[dict[str, Any]] | None:
    """``conditions`` with ``type_`` set (lastTransitionTime moves only when status flips);
    None when it already says exactly that (nothing to write). Other conditions are kept."""
    out: list[dict[str, Any]] = []
    found = False
    for raw in conditions:
        if raw.get("type") != type_:
            out.append(dict(raw))
            continue
        found = True
        if (raw.get("status"), raw.get("reason"), raw.get("message")) == (status, reason, message):
            return None
        current = Condition.model_validate(raw)
        if current.status != status:
            current.last_transition_time = now
        current.status, current.reason, current.message = status, reason, message
        out.append(current.model_dump(mode="json", by_alias=True, exclude_none=True))
    if not found:
        new = Condition(
            type=type_, status=status, reason=reason, message=message, last_transition_time=now
        )
        out.append(new.model_dump(mode="json", by_alias=True, exclude_none=True))
    return out


# --------------------------------------------------------------------------- the host's side
class ReleaseAction(StrEnum):
    """What a host does with its copy of a service whose binding ended."""

    STOP = "stop"
    """Stop it here (a daemon, a container; a Terraform apply that keeps its resources)."""
    INTERRUPT = "interrupt"
    """Only cut short what runs here: stopping would destroy (a Terraform destroyOnStop),
    and a binding that moved must never take the service down wherever it runs now."""


def release_action(destroys_on_stop: bool) -> ReleaseAction:
    return ReleaseAction.INTERRUPT if destroys_on_stop else ReleaseAction.STOP


def holds(binding: Binding | None, node: str, epoch: int | None) -> bool:
    """Whether a host that took the binding at ``epoch`` still holds it (None: took none)."""
    return (
        binding is not None
        and binding.node_name == node
        and (epoch is None or binding.epoch == epoch)
    )


def merged_conditions(
    engine: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The agent's conditions followed by those it does not own (the controller's Scheduled),
    as the object has them now: a status merge patch replaces the whole list."""
    mine = {c.get("type") for c in engine}
    return [*map(dict, engine), *(dict(c) for c in current if c.get("type") not in mine)]
