"""Host health and failover decisions (engine/hosts.py), as tables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from steward.api.node import StewardNode
from steward.api.placement import Failover, FailoverPolicy
from steward.engine import hosts as H

NEVER = Failover()
FENCING = Failover(
    policy=FailoverPolicy.AFTER_FENCING, fence_after_seconds=5, replace_after_seconds=10
)
MANUAL = Failover(policy=FailoverPolicy.MANUAL)


def test_the_clock_moves_only_when_the_renew_time_does() -> None:
    first = H.observe(None, "t1", 100.0)
    assert first == H.Seen("t1", 100.0)
    assert H.observe(first, "t1", 130.0) is first  # unchanged: still seen at 100
    assert H.observe(first, "t2", 131.0) == H.Seen("t2", 131.0)


@pytest.mark.parametrize(
    ("seen", "now", "started", "grace", "lost"),
    [
        (H.Seen("t", 100.0), 149.0, 0.0, 50.0, False),
        (H.Seen("t", 100.0), 150.0, 0.0, 50.0, False),  # exactly the grace: not yet
        (H.Seen("t", 100.0), 150.1, 0.0, 50.0, True),
        (None, 40.0, 0.0, 50.0, False),  # no Lease: counted from the controller's start
        (None, 51.0, 0.0, 50.0, True),
        (None, 51.0, 10.0, 50.0, False),  # a controller that just started waits a grace
    ],
)
def test_lost(seen: H.Seen | None, now: float, started: float, grace: float, lost: bool) -> None:
    assert H.lost(seen, now, started, grace) is lost


@pytest.mark.parametrize(
    ("total", "lost", "share", "storm"),
    [
        (3, 0, 0.5, False),
        (3, 1, 0.5, False),
        (3, 2, 0.5, True),
        (3, 3, 0.5, True),
        (2, 1, 0.5, False),  # one of two: believed
        (2, 2, 0.5, True),
        (1, 1, 0.5, True),  # the only host: the controller is likelier the one cut off
        (0, 0, 0.5, False),
        (10, 5, 0.5, False),
        (10, 6, 0.5, True),
    ],
)
def test_storm(total: int, lost: int, share: float, storm: bool) -> None:
    assert H.storm(total, lost, share) is storm


def test_guard_holds_during_a_storm_and_a_grace_after_it() -> None:
    g = H.Guard(quiet_since=0.0)
    assert not H.may_fail_over(g, 40.0, 50.0)  # just started
    assert H.may_fail_over(g, 51.0, 50.0)
    g = H.guard(g, 3, 3, 0.5, 60.0)
    assert g.storm and not H.may_fail_over(g, 200.0, 50.0)
    g = H.guard(g, 3, 0, 0.5, 210.0)  # over: hosts get a grace to renew
    assert g == H.Guard(quiet_since=210.0)
    assert not H.may_fail_over(g, 250.0, 50.0)
    assert H.may_fail_over(g, 261.0, 50.0)
    assert H.guard(g, 3, 1, 0.5, 300.0) is g  # one host lost is no storm


A = H.Action


@pytest.mark.parametrize(
    ("failover", "host_lost", "silent", "oos", "allowed", "expected"),
    [
        (NEVER, False, 100.0, False, True, A.NONE),
        (NEVER, True, 100.0, False, True, A.MARK_LOST),
        (NEVER, True, 100.0, True, True, A.REPLACE),  # out-of-service: the admin says so
        (NEVER, True, 100.0, True, False, A.MARK_LOST),  # ...but not in a storm
        (MANUAL, True, 1e6, False, True, A.MARK_LOST),
        (MANUAL, True, 1.0, True, True, A.REPLACE),
        (FENCING, True, 9.9, False, True, A.MARK_LOST),  # the host may still run it
        (FENCING, True, 10.0, False, True, A.REPLACE),
        (FENCING, True, 60.0, False, False, A.MARK_LOST),  # storm guard
        (FENCING, False, 60.0, False, True, A.NONE),  # a renewing host is never judged
    ],
)
def test_action(
    failover: Failover, host_lost: bool, silent: float, oos: bool, allowed: bool, expected: A
) -> None:
    assert H.action(failover, host_lost, silent, oos, allowed) is expected


@pytest.mark.parametrize(
    ("failover", "since", "due"),
    [
        (NEVER, 1e6, False),
        (MANUAL, 1e6, False),
        (FENCING, 4.9, False),
        (FENCING, 5.0, True),
    ],
)
def test_fence_due(failover: Failover, since: float, due: bool) -> None:
    assert H.fence_due(failover, since) is due


def test_the_host_fences_before_the_controller_replaces() -> None:
    """The host counts from the start of its last good renewal, the controller from when it
    saw it (later): with replace >= fence + margin the copy is gone before the next starts."""
    for fence in (1, 5, 30, 600):
        f = Failover(
            policy=FailoverPolicy.AFTER_FENCING,
            fence_after_seconds=fence,
            replace_after_seconds=fence + 5,
        )
        renewal_started, controller_saw = 1000.0, 1000.3
        replace_at = next(
            t / 10
            for t in range(10000, 200000)
            if H.action(f, True, t / 10 - controller_saw, False, True) is A.REPLACE
        )
        fence_at = next(
            t / 10 for t in range(10000, 200000) if H.fence_due(f, t / 10 - renewal_started)
        )
        assert replace_at - fence_at >= 5


@pytest.mark.parametrize(("fence", "replace"), [(30, 30), (30, 34), (60, 60), (1, 5)])
def test_replace_must_exceed_fence_by_the_margin(fence: int, replace: int) -> None:
    with pytest.raises(ValidationError, match="replaceAfterSeconds must exceed"):
        Failover(
            policy=FailoverPolicy.AFTER_FENCING,
            fence_after_seconds=fence,
            replace_after_seconds=replace,
        )


def test_a_lost_host_is_ready_unknown_to_placement() -> None:
    node = StewardNode.parse(
        {
            "metadata": {"name": "vm-2"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "AgentReady"},
                    {"type": "DockerReady", "status": "True"},
                ]
            },
        }
    )
    lost = H.as_lost(node)
    ready = lost.status.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    assert lost.status.condition("DockerReady") is not None
    assert node.status.condition("Ready").status == "True"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("last_good", "now", "period", "blind"),
    [
        (100.0, 100.5, 0.5, False),
        (100.0, 101.0, 0.5, False),  # two periods: a slow list, not blindness
        (100.0, 101.1, 0.5, True),
        (100.0, 160.0, 5.0, True),  # an apiserver outage of a minute
    ],
)
def test_blind(last_good: float, now: float, period: float, blind: bool) -> None:
    assert H.blind(last_good, now, period) is blind


def test_after_a_blind_spell_no_host_is_lost_until_a_full_grace() -> None:
    # Before an outage both hosts renewed at 100; the controller lists again at 160, when
    # only "a" has renewed since: "b" must not look lost alone (no storm) and fail over.
    seen = {"a": H.Seen("t1", 100.0), "b": H.Seen("t1", 100.0)}
    seen, guard = H.regained_sight(seen, 160.0)
    seen["a"] = H.observe(seen["a"], "t2", 160.0)
    assert not H.lost(seen["b"], 160.0, 0.0, 50.0)
    assert H.lost(seen["b"], 210.1, 0.0, 50.0)  # still silent a full grace later: lost
    assert guard == H.Guard(quiet_since=160.0)
    assert not H.may_fail_over(guard, 200.0, 50.0)
