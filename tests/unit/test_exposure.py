"""expose: Cluster: the Service/EndpointSlice decision as a table, and the endpoint status."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from pydantic import ValidationError

from steward.api import reasons as R
from steward.api.endpoint import EndpointSpec
from steward.api.manifest import ManagedService
from steward.api.status import EndpointStatus
from steward.engine import exposure as X
from steward.engine.endpoints import fill_endpoint

READY = {"type": "Ready", "status": "True", "reason": "Running"}
LOST = {"type": "Ready", "status": "Unknown", "reason": R.NODE_LOST}
NOT_READY = {"type": "Ready", "status": "False", "reason": "Unhealthy"}


def body(**changes: Any) -> dict[str, Any]:
    """A bound, reported, healthy, Ready exposed service on 10.0.0.7:31000; ``changes``
    are dotted paths (None deletes)."""
    out: dict[str, Any] = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u-1"},
        "spec": {
            "daemon": {"command": ["x"]},
            "endpoint": {"protocol": "http", "port": 8080, "expose": "Cluster"},
        },
        "status": {
            "state": "active",
            "health": {"state": "healthy"},
            "endpoint": {"host": "10.0.0.7", "port": 31000},
            "placement": {"nodeName": "h1", "epoch": 3, "reportedEpoch": 3},
            "conditions": [READY],
        },
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return out


# (case, body, ready, serving, terminating)
CONDITIONS = [
    ("ready", body(), True, True, False),
    ("unbound-single-host", body(status__placement=None), True, True, False),
    ("stale-epoch", body(status__placement={"nodeName": "h2", "epoch": 4}), False, False, False),
    ("released", body(status__placement={"epoch": 3, "releasedEpoch": 3}), False, False, False),
    ("node-lost", body(status__conditions=[LOST]), False, False, False),
    ("unhealthy", body(status__health={"state": "unhealthy"}), False, False, False),
    ("starting", body(status__state="pending_startup"), False, False, False),
    ("not-ready-yet", body(status__conditions=[NOT_READY]), False, True, False),
    ("deleting", body(metadata__deletionTimestamp="2026-01-01T00:00:00Z"), False, True, True),
    (
        "stopping",
        body(status__state="pending_shutdown", status__conditions=[NOT_READY]),
        False,
        True,
        True,
    ),
    ("admin-inactive", body(spec__adminState="inactive"), False, True, True),
    ("crashed", body(status__state="error"), False, False, False),
]


@pytest.mark.parametrize(
    ("case", "obj", "ready", "serving", "terminating"), CONDITIONS, ids=[c[0] for c in CONDITIONS]
)
def test_endpoint_conditions(
    case: str, obj: dict[str, Any], ready: bool, serving: bool, terminating: bool
) -> None:
    assert X.conditions(obj) == X.EndpointConditions(ready, serving, terminating)
    slice_ = X.desired(obj).endpoint_slice
    assert slice_ is not None
    assert slice_["endpoints"][0]["conditions"] == {
        "ready": ready,
        "serving": serving,
        "terminating": terminating,
    }


def test_ready_implies_serving_and_not_terminating() -> None:
    for _, obj, *_ in CONDITIONS:
        c = X.conditions(obj)
        assert not c.ready or (c.serving and not c.terminating)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "169.254.1.2", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "web.local", ""],
)
def test_never_an_unreachable_address(address: str) -> None:
    slice_ = X.desired(body(status__endpoint={"host": address, "port": 31000})).endpoint_slice
    assert slice_ is not None and slice_["endpoints"] == []


def test_service_and_slice_shapes() -> None:
    want = X.desired(body())
    svc, sl = want.service, want.endpoint_slice
    assert svc is not None and sl is not None
    assert "selector" not in svc["spec"] and svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "endpoint", "protocol": "TCP", "port": 8080, "appProtocol": "http"}
    ]
    assert svc["metadata"]["labels"][X.OWNER_LABEL] == "web"
    owner = svc["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ManagedService" and owner["uid"] == "u-1" and owner["controller"]
    assert sl["metadata"]["name"] == "web-steward"
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == X.SLICE_MANAGER
    for obj in (svc, sl):  # what the apiserver accepts as a label value
        for value in obj["metadata"]["labels"].values():
            assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value), value
            assert len(value) <= 63
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [
        {"name": "endpoint", "protocol": "TCP", "port": 31000, "appProtocol": "http"}
    ]
    assert sl["endpoints"][0]["addresses"] == ["10.0.0.7"]
    v6 = X.desired(body(status__endpoint={"host": "fd00::7", "port": 31000})).endpoint_slice
    assert v6 is not None and v6["addressType"] == "IPv6" and v6["endpoints"]


def test_tcp_has_no_app_protocol_and_no_port_yet_uses_the_services() -> None:
    obj = body(spec__endpoint={"port": 5432, "expose": "Cluster"}, status__endpoint={})
    want = X.desired(obj)
    assert want.service is not None and "appProtocol" not in want.service["spec"]["ports"][0]
    assert want.endpoint_slice is not None
    assert want.endpoint_slice["ports"][0]["port"] == 5432
    assert want.endpoint_slice["endpoints"] == []


@pytest.mark.parametrize(
    "obj",
    [body(spec__endpoint={"port": 8080}), body(spec__endpoint={"port": 8080, "expose": "None"}),
     body(spec__endpoint=None)],
)  # fmt: skip
def test_not_exposed_wants_nothing(obj: dict[str, Any]) -> None:
    assert X.desired(obj) == X.NOTHING


def test_the_old_address_is_not_ready_once_rebound() -> None:
    """Failover: the controller's rebinding alone (epoch 4, nothing reported yet) takes the
    old host's address out, before the new host can have written its own."""
    before = X.desired(body()).endpoint_slice
    rebound = body(status__placement={"nodeName": "h2", "epoch": 4})
    after = X.desired(rebound).endpoint_slice
    assert before is not None and after is not None
    assert before["endpoints"][0]["conditions"]["ready"]
    assert after["endpoints"][0]["addresses"] == ["10.0.0.7"]
    assert not after["endpoints"][0]["conditions"]["ready"]
    reported = body(
        status__placement={"nodeName": "h2", "epoch": 4, "reportedEpoch": 4},
        status__endpoint={"host": "10.0.0.8", "port": 31002},
    )
    final = X.desired(reported).endpoint_slice
    assert final is not None and final["endpoints"][0]["addresses"] == ["10.0.0.8"]
    assert final["endpoints"][0]["conditions"]["ready"]


def test_ours_reads_the_owner_label() -> None:
    assert X.ours({"metadata": {"labels": {X.OWNER_LABEL: "web"}}}, "web")
    assert not X.ours({"metadata": {"labels": {X.OWNER_LABEL: "other"}}}, "web")
    assert not X.ours({"metadata": {}}, "web") and not X.ours(None, "web")


# --------------------------------------------------------------------------- the spec side
def test_on_host_binds_the_host_address_only_when_exposed() -> None:
    plain = EndpointSpec.model_validate({"port": 8080})
    assert plain.on_host("10.0.0.7") is plain
    ep = EndpointSpec.model_validate({"port": 8080, "expose": "Cluster"})
    assert ep.on_host("10.0.0.7").host == "10.0.0.7"
    assert ep.on_host(None).host == "127.0.0.1"
    assert EndpointSpec.model_validate({"port": 1, "expose": "Cluster", "host": "$(HOST_IP)"})


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"expose": "Cluster"}, "needs a port"),
        ({"port": 1, "expose": "Cluster", "host": "0.0.0.0"}, "binds on its host's address"),
        ({"port": 1, "expose": "Public"}, "expose"),
    ],
)
def test_invalid_exposure_is_refused_by_the_model(endpoint: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EndpointSpec.model_validate(endpoint)


def test_the_model_refuses_what_the_crd_refuses() -> None:
    base = {"apiVersion": "steward.dev/v1alpha1", "kind": "ManagedService"}
    ep = {"port": 80, "expose": "Cluster"}
    with pytest.raises(ValidationError, match="start with a letter"):
        ManagedService.parse({**base, "metadata": {"name": "9web"}, "spec": {
            "daemon": {"command": ["x"]}, "endpoint": ep}})  # fmt: skip
    with pytest.raises(ValidationError, match="listens on its host"):
        ManagedService.parse({**base, "metadata": {"name": "web"}, "spec": {
            "terraform": {"module": {"path": "/m"}}, "endpoint": ep}})  # fmt: skip


def test_status_names_the_service_and_keeps_the_host_uri() -> None:
    ep = EndpointSpec.model_validate({"protocol": "http", "port": 8080, "expose": "Cluster"})
    st = EndpointStatus(port=31000)
    fill_endpoint(st, ep.on_host("10.0.0.7"), service_host="web.team-a.svc")
    assert st.uri == "http://web.team-a.svc:8080"
    assert st.host_uri == "http://10.0.0.7:31000"
    assert st.health_url == "http://10.0.0.7:31000/" and st.host == "10.0.0.7"
    local = EndpointStatus(port=31000)
    fill_endpoint(local, ep.on_host(None))
    assert local.uri == "http://127.0.0.1:31000" and local.host_uri is None
