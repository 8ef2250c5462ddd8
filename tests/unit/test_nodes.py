"""A host's StewardNode status and Lease verdict (engine/nodes.py): pure, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from steward.api.node import NodeAddress
from steward.engine.nodes import (
    AGENT_STOPPED,
    NodeSettings,
    capacity,
    lease_expired,
    node_status,
    report_due,
    stopped_status,
)
from steward.runtimes.base import Fingerprint
from steward.runtimes.host import HostFacts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GIB = 1 << 30


def facts(docker: bool = True, terraform: bool = True, cpus: int = 2) -> HostFacts:
    return HostFacts(
        hostname="host-a",
        boot_id="b-1",
        cpus=cpus,
        memory_bytes=8 * GIB,
        fingerprints={
            "daemon": Fingerprint(True, "Available", ""),
            "container": Fingerprint(docker, "EngineReady" if docker else "DockerUnavailable", ""),
            "terraform": Fingerprint(terraform, "BinaryFound", "terraform 1.9"),
        },
    )


@pytest.mark.parametrize(
    ("settings", "cap", "alloc"),
    [
        (
            NodeSettings("a"),
            {"cpu": "2", "memory": "8388608Ki", "services": "110"},
            {"cpu": "2", "memory": "8388608Ki", "services": "110"},
        ),
        (
            NodeSettings("a", reserved_cpu="500m", reserved_memory="1Gi", max_services=20),
            {"cpu": "2", "memory": "8388608Ki", "services": "20"},
            {"cpu": "1500m", "memory": "7340032Ki", "services": "20"},
        ),
        (
            NodeSettings("a", reserved_cpu="4", extended={"nvidia.com/gpu": "2"}),
            {"cpu": "2", "memory": "8388608Ki", "services": "110", "nvidia.com/gpu": "2"},
            {"cpu": "0", "memory": "8388608Ki", "services": "110", "nvidia.com/gpu": "2"},
        ),
    ],
)
def test_capacity_and_allocatable(
    settings: NodeSettings, cap: dict[str, str], alloc: dict[str, str]
) -> None:
    assert capacity(facts(), settings) == (cap, alloc)


def test_conditions_follow_the_fingerprints_and_keep_their_transition_times() -> None:
    s = NodeSettings("a", addresses=(NodeAddress(type="InternalIP", address="10.0.0.2"),))
    first = node_status(facts(), s, None, T0)
    by = {c.type: c for c in first.conditions}
    assert [c.type for c in first.conditions] == ["Ready", "DockerReady", "TerraformReady"]
    assert {t: c.status for t, c in by.items()} == {
        "Ready": "True",
        "DockerReady": "True",
        "TerraformReady": "True",
    }
    assert first.addresses[0].address == "10.0.0.2"

    later = T0 + timedelta(minutes=1)
    same = node_status(facts(), s, first, later)
    assert all(c.last_transition_time == T0 for c in same.conditions)

    broken = node_status(facts(docker=False), s, same, later)
    by = {c.type: c for c in broken.conditions}
    # a failing engine is a condition on a live host, never a lost host
    assert by["Ready"].status == "True" and by["Ready"].last_transition_time == T0
    assert by["DockerReady"].status == "False" and by["DockerReady"].last_transition_time == later
    assert by["DockerReady"].reason == "DockerUnavailable"


@pytest.mark.parametrize(
    ("reported", "change", "age", "due"),
    [
        (False, False, 0.0, True),  # never written
        (True, False, 10.0, False),  # unchanged, recent: nothing to write
        (True, False, 300.0, True),  # unchanged, but the report interval passed
        (True, True, 1.0, True),  # changed: at once
    ],
)
def test_report_due(reported: bool, change: bool, age: float, due: bool) -> None:
    s = NodeSettings("a")
    old = node_status(facts(), s, None, T0)
    new = node_status(facts(docker=not change), s, old, T0 + timedelta(seconds=age))
    assert report_due(old if reported else None, new, 1000.0, 1000.0 + age, 300.0) is due


def test_transition_times_alone_are_no_change() -> None:
    s = NodeSettings("a")
    old = node_status(facts(), s, None, T0)
    new = node_status(facts(), s, None, T0 + timedelta(hours=1))  # no prior: new times
    assert not report_due(old, new, 0.0, 1.0, 300.0)


@pytest.mark.parametrize(
    ("renewed_ago", "duration", "expired"),
    [(None, 40, True), (0, 40, False), (39.9, 40, False), (40.1, 40, True), (5, 4, True)],
)
def test_lease_expired(renewed_ago: float | None, duration: float, expired: bool) -> None:
    renew = None if renewed_ago is None else T0 - timedelta(seconds=renewed_ago)
    assert lease_expired(renew, duration, T0) is expired


def test_a_stopped_agent_says_so() -> None:
    s = NodeSettings("a")
    status = stopped_status(node_status(facts(), s, None, T0), T0 + timedelta(seconds=5))
    ready = status.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", AGENT_STOPPED)
    assert status.condition("DockerReady") is not None
