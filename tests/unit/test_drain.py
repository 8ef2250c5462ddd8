"""What `steward drain` moves and when a moved service has left the host (engine/drain.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from steward.api.status import Binding
from steward.engine import drain as D

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def bound(node: str | None, epoch: int, released: int | None = None) -> Binding:
    return Binding(node_name=node, epoch=epoch, bound_at=T0, released_epoch=released)


def test_plan_moves_what_is_bound_here_and_names_the_pinned() -> None:
    services = [
        D.OnHost("b/web", bound("n1", 3)),
        D.OnHost("a/db", bound("n1", 1), pinned=True),
        D.OnHost("a/api", bound("n2", 1)),  # another host's
        D.OnHost("a/gone", bound("n1", 2), deleting=True),  # its finalizer's
        D.OnHost("a/new", None),  # never bound
        D.OnHost("a/moving", bound(None, 4)),  # unbound already
    ]
    plan = D.plan("n1", services, NOW)
    assert plan.pinned == ["a/db"]
    assert list(plan.move) == ["b/web"]
    new = plan.move["b/web"]
    # epoch + 1, unbound, NOT released: the live agent stops it and releases it itself
    assert (new.node_name, new.epoch, new.released_epoch, new.bound_at) == (None, 4, None, NOW)


def test_plan_of_an_empty_host() -> None:
    assert D.plan("n1", [], NOW) == D.Plan()


@pytest.mark.parametrize(
    ("binding", "left"),
    [
        (bound(None, 4), False),  # unbound, the agent has not released it yet
        (bound(None, 4, released=2), False),  # an older release: not this one
        (bound(None, 4, released=3), True),  # the agent stopped it and released epoch 3
        (bound("n2", 5, released=3), True),  # and the controller bound it elsewhere
        (bound("n1", 5), False),  # bound back here (uncordoned meanwhile): not drained
        (bound("n1", 3), False),  # the unbinding did not land (an older epoch)
        (bound(None, 6), True),  # moved on since, by somebody else
        (None, True),
    ],
)
def test_left_host(binding: Binding | None, left: bool) -> None:
    assert D.left_host("n1", 4, binding) is left
