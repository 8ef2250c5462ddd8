"""Placement (api/placement.py, engine/placement.py): the models, the filters with their
reasons, the scoring, pins and epochs, as tables."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from steward.api import reasons as R
from steward.api.container import parse_quantity
from steward.api.crd import crd
from steward.api.node import StewardNode
from steward.api.placement import Placement, Toleration, requests_of
from steward.api.spec import ManagedServiceSpec
from steward.api.status import Binding, ManagedServiceStatus
from steward.engine.placement import (
    Bound,
    fenced_unbinding,
    is_current,
    next_binding,
    place,
    unavailable_message,
    unbinding,
)
from tests.support.placement import T0
from tests.support.placement import steward_node as node


def pl(**kw: Any) -> Placement:
    return Placement.model_validate(kw)


GPU_TAINT = {"key": "gpu", "value": "true", "effect": "NoSchedule"}


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}, "takes no value"),
        ({"tolerations": [{"value": "x"}]}, "empty key needs operator Exists"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "needs effect NoExecute"),
        (
            {"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]},
            "needs effect NoExecute",
        ),
        ({"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": -1}]}, "0"),
        ({"tolerations": [{"key": "a", "effect": "Sometimes"}]}, "effect"),
        ({"tolerations": [{"key": "a", "operator": "In"}]}, "operator"),
        ({"tolerations": [{"key": "bad key"}]}, "pattern"),
        ({"resources": {"requests": {"services": 2}}}, "always 1"),
        ({"resources": {"requests": {"gpu": 1}}}, "domain-qualified"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "not a Kubernetes quantity"),
        ({"resources": {"requests": {"cpu": 0.5}}}, "write `500m`"),
        ({"resources": {"requests": {"cpu": True}}}, "neither an integer"),
        ({"resources": {"requests": {"memory": -1}}}, "negative"),
        ({"resources": {"requests": {"nvidia.com/gpu": "0.5"}}}, "whole numbers"),
        ({"resources": {"requests": {"cpu": "1" * 65}}}, "longer than 64"),
        ({"nodeSelector": {"zone": "a b"}}, "not a label value"),
        ({"nodeSelector": {"-zone": "a"}}, "not a label key"),
        ({"nodeName": "Bad_Name"}, "pattern"),
        ({"strategy": "Random"}, "Spread"),
        ({"nodeSelektor": {}}, "Extra inputs"),
    ],
)
def test_invalid_placements_are_refused(data: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        Placement.model_validate(data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"tolerations": [{"operator": "Exists"}]},
        {"tolerations": [{"key": "gpu"}]},  # Equal with an empty value, as Kubernetes allows
        {"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": 0}]},
        {"resources": {"requests": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": "2"}}},
        {"nodeName": "gpu-box-1.example", "nodeSelector": {"example.com/zone": ""}},
        {"strategy": "Binpack"},
    ],
)
def test_valid_placements(data: dict[str, Any]) -> None:
    parsed = Placement.model_validate(data)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_defaults=True) == data


def test_spec_carries_placement_and_status_the_binding() -> None:
    spec = ManagedServiceSpec.model_validate(
        {"daemon": {"command": ["sleep", "1"]}, "placement": {"nodeName": "vm-2"}}
    )
    assert spec.placement is not None and spec.placement.node_name == "vm-2"
    status = ManagedServiceStatus.model_validate(
        {"placement": {"nodeName": "vm-2", "epoch": 3, "boundAt": "2026-12-01T12:00:00Z"}}
    )
    assert status.placement == Binding(node_name="vm-2", epoch=3, bound_at=T0)
    with pytest.raises(ValidationError):
        ManagedServiceStatus.model_validate({"placement": {"epoch": -1}})


def test_crd_has_the_placement_rules() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]["placement"]["properties"]
    tol = spec["tolerations"]["items"]
    assert tol["properties"]["effect"]["enum"] == [
        "",
        "NoSchedule",
        "PreferNoSchedule",
        "NoExecute",
    ]
    assert len(tol["x-kubernetes-validations"]) == 3
    requests = spec["resources"]["properties"]["requests"]
    assert requests["additionalProperties"] == {"x-kubernetes-int-or-string": True, "maxLength": 64}
    assert requests["maxProperties"] == 16 and len(requests["x-kubernetes-validations"]) == 2
    assert spec["strategy"]["enum"] == ["Spread", "Binpack"]
    binding = schema["properties"]["status"]["properties"]["placement"]
    assert "oldSelf.epoch" in binding["x-kubernetes-validations"][0]["rule"]


def test_node_parse_drops_unknown_metadata() -> None:
    n = node("vm-1", labels={"zone": "a"})
    assert (n.name, n.metadata.labels) == ("vm-1", {"zone": "a"})
    assert StewardNode.parse({"metadata": {"name": "bare"}}).status.allocatable == {}


# --------------------------------------------------------------------------- quantities
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("1Ki", Decimal(1024)),
        ("256Mi", Decimal(256 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("100u", Decimal("0.0001")),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "-1", "1Mb", "lots", "1 Gi"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("placement", "requests"),
    [
        (None, {"services": Decimal(1)}),
        (
            pl(resources={"requests": {"cpu": "500m", "memory": 1024, "nvidia.com/gpu": "2"}}),
            {
                "services": Decimal(1),
                "cpu": Decimal("0.5"),
                "memory": Decimal(1024),
                "nvidia.com/gpu": Decimal(2),
            },
        ),
    ],
)
def test_requests_of(placement: Placement | None, requests: dict[str, Decimal]) -> None:
    assert requests_of(placement) == requests


# --------------------------------------------------------------------------- tolerations
@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        ({"key": "gpu", "value": "true"}, ("gpu", "true", "NoSchedule"), True),
        ({"key": "gpu", "value": "false"}, ("gpu", "true", "NoSchedule"), False),
        ({"key": "gpu"}, ("gpu", "", "NoSchedule"), True),
        ({"key": "gpu"}, ("gpu", "true", "NoSchedule"), False),
        ({"key": "gpu", "operator": "Exists"}, ("gpu", "anything", "NoExecute"), True),
        ({"key": "gpu", "operator": "Exists"}, ("other", "x", "NoExecute"), False),
        ({"operator": "Exists"}, ("any", "thing", "NoExecute"), True),
        ({"operator": "Exists", "effect": "NoSchedule"}, ("any", "x", "NoExecute"), False),
        (
            {"key": "gpu", "operator": "Exists", "effect": "NoExecute"},
            ("gpu", "", "NoExecute"),
            True,
        ),
    ],
)
def test_tolerates(
    toleration: dict[str, Any], taint: tuple[str, str, str], tolerated: bool
) -> None:
    assert Toleration.model_validate(toleration).tolerates(*taint) is tolerated


# --------------------------------------------------------------------------- filters and reasons
FILTER_CASES: list[tuple[str, list[StewardNode], Placement | None, str, list[Bound], str]] = [
    (
        "not ready",
        [node("a", ready="False"), node("b", ready="Unknown"), node("c", ready=None)],
        None,
        "daemon",
        [],
        "0/3 nodes are available: 3 node(s) were not ready.",
    ),
    (
        "cordoned",
        [node("a", unschedulable=True)],
        None,
        "daemon",
        [],
        "0/1 nodes are available: 1 node(s) were unschedulable.",
    ),
    (
        "taint and selector, as the kube-scheduler says it",
        [
            node("a", taints=[GPU_TAINT], labels={"zone": "a"}),
            node("b", labels={"zone": "b"}),
            node("c"),
        ],
        pl(nodeSelector={"zone": "a"}),
        "daemon",
        [],
        "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: true}, "
        "2 node(s) didn't match node selector.",
    ),
    (
        "NoExecute taints filter too",
        [node("a", taints=[{"key": "maint", "value": "", "effect": "NoExecute"}])],
        pl(tolerations=[{"key": "maint", "effect": "NoSchedule", "operator": "Exists"}]),
        "daemon",
        [],
        "0/1 nodes are available: 1 node(s) had untolerated taint {maint: }.",
    ),
    (
        "runtimes",
        [node("a", docker="False"), node("b", docker=None), node("c", docker="Unknown")],
        None,
        "container",
        [],
        "0/3 nodes are available: 3 node(s) didn't have the container runtime ready "
        "(DockerReady is not True).",
    ),
    (
        "terraform runtime",
        [node("a", terraform="Unknown")],
        None,
        "terraform",
        [],
        "0/1 nodes are available: 1 node(s) didn't have the terraform runtime ready "
        "(TerraformReady is not True).",
    ),
    (
        "cpu and memory, counting what is bound",
        [node("a"), node("b")],
        pl(resources={"requests": {"cpu": "1500m", "memory": "3Gi"}}),
        "daemon",
        [
            Bound.of("ns/x", "a", pl(resources={"requests": {"cpu": 1}})),
            Bound.of("ns/y", "b", pl(resources={"requests": {"cpu": 1, "memory": "2Gi"}})),
        ],
        "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.",
    ),
    (
        "services count, extended resources absent from the host",
        [node("a", alloc={"services": "1"}), node("b")],
        pl(resources={"requests": {"nvidia.com/gpu": 1}}),
        "daemon",
        [Bound.of("ns/x", "a", None)],
        "0/2 nodes are available: 1 Too many services, 2 Insufficient nvidia.com/gpu.",
    ),
    (
        "a host that never reported takes nothing",
        [node("a", alloc={})],
        None,
        "daemon",
        [],
        "0/1 nodes are available: 1 Too many services.",
    ),
    (
        "no hosts at all",
        [],
        None,
        "daemon",
        [],
        "0/0 nodes are available: no StewardNodes are registered.",
    ),
    (
        "pinned to a host that does not exist",
        [node("a")],
        pl(nodeName="b"),
        "daemon",
        [],
        "spec.placement.nodeName: StewardNode b does not exist.",
    ),
    (
        "pinned: what kubelet would refuse still counts",
        [node("a"), node("b", labels={"zone": "b"})],
        pl(nodeName="b", nodeSelector={"zone": "a"}),
        "daemon",
        [],
        "0/1 nodes are available (pinned to b by spec.placement.nodeName): "
        "1 node(s) didn't match node selector.",
    ),
    (
        "pinned: resources",
        [node("a", alloc={"services": "10", "cpu": "1"})],
        pl(nodeName="a", resources={"requests": {"cpu": 2}}),
        "daemon",
        [],
        "0/1 nodes are available (pinned to a by spec.placement.nodeName): 1 Insufficient cpu.",
    ),
    (
        "pinned: NoExecute",
        [node("a", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])],
        pl(nodeName="a"),
        "daemon",
        [],
        "0/1 nodes are available (pinned to a by spec.placement.nodeName): "
        "1 node(s) had untolerated taint {k: v}.",
    ),
    (
        "pinned: runtime",
        [node("a", docker="False")],
        pl(nodeName="a"),
        "container",
        [],
        "0/1 nodes are available (pinned to a by spec.placement.nodeName): "
        "1 node(s) didn't have the container runtime ready (DockerReady is not True).",
    ),
]


@pytest.mark.parametrize(
    ("nodes", "placement", "flavor", "bindings", "message"),
    [c[1:] for c in FILTER_CASES],
    ids=[c[0] for c in FILTER_CASES],
)
def test_unschedulable_reasons(
    nodes: list[StewardNode],
    placement: Placement | None,
    flavor: str,
    bindings: list[Bound],
    message: str,
) -> None:
    decision = place(nodes, bindings, placement, flavor, service="ns/svc")
    assert (decision.node, decision.reason, decision.message) == (
        None,
        R.UNSCHEDULABLE,
        message,
    )
    assert not decision.schedulable


def test_failures_are_counted_by_reason() -> None:
    nodes = [node("a", ready="False"), node("b", ready="False"), node("c")]
    decision = place(nodes, [], pl(nodeSelector={"x": "y"}), "daemon")
    assert decision.failures == {
        "node(s) were not ready": 2,
        "node(s) didn't match node selector": 1,
    }


PASS_CASES: list[tuple[str, list[StewardNode], Placement | None, str, list[Bound], str]] = [
    (
        "only the fitting host",
        [node("a", ready="False"), node("b", unschedulable=True), node("c")],
        None,
        "daemon",
        [],
        "c",
    ),
    (
        "a daemon needs no runtime condition",
        [node("a", docker=None, terraform=None)],
        None,
        "daemon",
        [],
        "a",
    ),
    (
        "tolerated taint",
        [node("a", taints=[GPU_TAINT])],
        pl(tolerations=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
        "daemon",
        [],
        "a",
    ),
    (
        "PreferNoSchedule does not filter",
        [node("a", taints=[{"key": "k", "value": "", "effect": "PreferNoSchedule"}])],
        None,
        "daemon",
        [],
        "a",
    ),
    (
        "selector matched",
        [node("a", labels={"zone": "b"}), node("b", labels={"zone": "a", "gpu": "1"})],
        pl(nodeSelector={"zone": "a"}),
        "daemon",
        [],
        "b",
    ),
    (
        "exactly what is left fits",
        [node("a", alloc={"services": "2", "cpu": "2", "nvidia.com/gpu": "2"})],
        pl(resources={"requests": {"cpu": "500m", "nvidia.com/gpu": 1}}),
        "daemon",
        [Bound.of("ns/x", "a", pl(resources={"requests": {"cpu": "1500m", "nvidia.com/gpu": 1}}))],
        "a",
    ),
    (
        "the service's own binding is not counted against it",
        [node("a", alloc={"services": "1"})],
        None,
        "daemon",
        [Bound.of("ns/svc", "a", None)],
        "a",
    ),
    (
        "a zero request of a resource the host lacks fits",
        [node("a")],
        pl(resources={"requests": {"example.com/dongle": 0}}),
        "daemon",
        [],
        "a",
    ),
    (
        "pinned: bound although not Ready, cordoned and tainted NoSchedule",
        [node("a"), node("b", ready="Unknown", unschedulable=True, taints=[GPU_TAINT])],
        pl(nodeName="b"),
        "container",
        [],
        "b",
    ),
]


@pytest.mark.parametrize(
    ("nodes", "placement", "flavor", "bindings", "chosen"),
    [c[1:] for c in PASS_CASES],
    ids=[c[0] for c in PASS_CASES],
)
def test_schedulable(
    nodes: list[StewardNode],
    placement: Placement | None,
    flavor: str,
    bindings: list[Bound],
    chosen: str,
) -> None:
    decision = place(nodes, bindings, placement, flavor, service="ns/svc")
    assert (decision.node, decision.reason, decision.message) == (
        chosen,
        R.SCHEDULED,
        f"assigned to {chosen}",
    )


def test_unknown_flavor_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown flavor"):
        place([node("a")], [], None, "vm")


# --------------------------------------------------------------------------- scoring
BIG = {"cpu": "8", "memory": "16Gi", "services": "10"}
SMALL = {"cpu": "2", "memory": "4Gi", "services": "10"}
CPU1 = {"resources": {"requests": {"cpu": 1}}}


@pytest.mark.parametrize(
    ("nodes", "bindings", "placement", "chosen"),
    [
        # Nothing requested: by the share of services taken.
        ([node("b"), node("a")], [Bound.of("ns/x", "a", None)], {}, "b"),
        ([node("b"), node("a")], [Bound.of("ns/x", "a", None)], {"strategy": "Binpack"}, "a"),
        # A tie goes to the first name, whatever the order of the list.
        ([node("b"), node("a")], [], {}, "a"),
        ([node("b"), node("a")], [], {"strategy": "Binpack"}, "a"),
        # CPU: 1 of 8 is less allocated than 1 of 2.
        ([node("small", alloc=SMALL), node("big", alloc=BIG)], [], CPU1, "big"),
        (
            [node("small", alloc=SMALL), node("big", alloc=BIG)],
            [],
            {**CPU1, "strategy": "Binpack"},
            "small",
        ),
        # What is bound counts: big already holds 6 CPUs.
        (
            [node("small", alloc=SMALL), node("big", alloc=BIG)],
            [Bound.of("ns/x", "big", pl(resources={"requests": {"cpu": 6}}))],
            CPU1,
            "small",
        ),
        # An untolerated PreferNoSchedule taint ranks a host last, for either strategy.
        (
            [
                node("a", taints=[{"key": "k", "value": "", "effect": "PreferNoSchedule"}]),
                node("b"),
            ],
            [],
            {},
            "b",
        ),
        (
            [
                node("a", taints=[{"key": "k", "value": "", "effect": "PreferNoSchedule"}]),
                node("b"),
            ],
            [Bound.of("ns/x", "a", None)],
            {"strategy": "Binpack"},
            "b",
        ),
        (
            [
                node("a", taints=[{"key": "k", "value": "", "effect": "PreferNoSchedule"}]),
                node("b"),
            ],
            [Bound.of("ns/x", "a", None)],
            {"strategy": "Binpack", "tolerations": [{"key": "k", "operator": "Exists"}]},
            "a",
        ),
    ],
)
def test_scoring(
    nodes: list[StewardNode], bindings: list[Bound], placement: dict[str, Any], chosen: str
) -> None:
    assert place(nodes, bindings, pl(**placement), "daemon").node == chosen


def test_spread_fills_hosts_evenly_and_binpack_fills_one_first() -> None:
    nodes = [node("a"), node("b"), node("c")]

    def fill(strategy: str, count: int) -> list[str]:
        bound: list[Bound] = []
        for i in range(count):
            p = pl(strategy=strategy)
            chosen = place(nodes, bound, p, "daemon", service=f"ns/s{i}").node
            assert chosen is not None
            bound.append(Bound.of(f"ns/s{i}", chosen, p))
        return [b.node for b in bound]

    assert fill("Spread", 6) == ["a", "b", "c", "a", "b", "c"]
    assert fill("Binpack", 11) == ["a"] * 10 + ["b"]


def test_message_sorts_like_the_kube_scheduler() -> None:
    assert unavailable_message(3, {"b": 1, "a": 2}) == "0/3 nodes are available: 1 b, 2 a."
    assert unavailable_message(2, {}) == "0/2 nodes are available."


# --------------------------------------------------------------------------- epochs
@pytest.mark.parametrize(
    ("previous", "node_name", "expected"),
    [
        (None, "a", Binding(node_name="a", epoch=1, bound_at=T0)),
        (
            Binding(node_name="a", epoch=4, bound_at=T0 - timedelta(hours=1)),
            "a",
            Binding(node_name="a", epoch=4, bound_at=T0 - timedelta(hours=1)),
        ),
        (Binding(node_name="a", epoch=4), "b", Binding(node_name="b", epoch=5, bound_at=T0)),
        (Binding(node_name=None, epoch=5), "a", Binding(node_name="a", epoch=6, bound_at=T0)),
    ],
)
def test_next_binding(previous: Binding | None, node_name: str, expected: Binding) -> None:
    assert next_binding(previous, node_name, T0) == expected


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, None),
        (Binding(node_name="a", epoch=4), Binding(node_name=None, epoch=5, bound_at=T0)),
        (Binding(node_name=None, epoch=5), Binding(node_name=None, epoch=5)),
    ],
)
def test_unbinding_raises_the_epoch_once(
    previous: Binding | None, expected: Binding | None
) -> None:
    assert unbinding(previous, T0) == expected


def test_epochs_only_grow_over_moves() -> None:
    b: Binding | None = None
    epochs = []
    for host in ["a", "a", "b", None, "b", "c", "c"]:
        b = unbinding(b, T0) if host is None else next_binding(b, host, T0)
        assert b is not None
        epochs.append(b.epoch)
    assert epochs == [1, 1, 2, 3, 4, 5, 5]


@pytest.mark.parametrize(
    ("binding", "node_name", "epoch", "current"),
    [
        (Binding(node_name="a", epoch=3), "a", 3, True),
        (Binding(node_name="a", epoch=3), "a", 2, False),
        (Binding(node_name="a", epoch=3), "a", 4, False),
        (Binding(node_name="a", epoch=3), "b", 3, False),
        (Binding(node_name=None, epoch=3), "a", 3, False),
        (None, "a", 0, False),
    ],
)
def test_is_current(binding: Binding | None, node_name: str, epoch: int, current: bool) -> None:
    assert is_current(binding, node_name, epoch) is current


def test_fenced_hosts_follow_a_failover_to_the_next_host_and_a_clean_move_forgets_them() -> None:
    """What lets the next host break a Terraform lock: the hosts released on their behalf."""
    b = next_binding(None, "a", T0)
    assert b.fenced_nodes is None
    b = fenced_unbinding(b, T0)  # a is fenced; the controller releases its epoch
    assert (b.node_name, b.epoch, b.fenced_nodes) == (None, 2, ["a"])
    b = next_binding(b, "b", T0)
    assert (b.node_name, b.epoch, b.fenced_nodes) == ("b", 3, ["a"])
    b = fenced_unbinding(b, T0)
    b = next_binding(b, "a", T0)  # back to a: a is still listed, b joins
    assert (b.epoch, b.fenced_nodes) == (5, ["a", "b"])
    b = fenced_unbinding(b, T0)
    assert b.fenced_nodes == ["b", "a"]  # no duplicates; the newest last
    b = unbinding(next_binding(b, "c", T0), T0)  # c releases it itself: a clean move
    assert b.fenced_nodes is None
