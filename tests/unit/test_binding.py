"""Bindings over time (engine/binding.py): the controller's decision per service, the
release handshake, the Scheduled condition, and what an agent presents and keeps — as tables.
The adapter's pure parts (the agent's status hooks, the held epochs, the field selector) too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
from pydantic import ValidationError

from steward.api import reasons as R
from steward.api.crd import crd
from steward.api.node import StewardNode
from steward.api.status import (
    IN_FORCE_MESSAGE,
    STALE_EPOCH_MESSAGE,
    Binding,
    ManagedServiceStatus,
)
from steward.engine.binding import (
    MAX_BACKOFF,
    SCHEDULED,
    ReleaseAction,
    Verdict,
    backoff,
    decide,
    finalizer_removable,
    flavor_of,
    holds,
    merged_conditions,
    release_action,
    released,
    with_condition,
)
from steward.engine.placement import Bound
from steward.k8s.clients import Clients
from steward.k8s.config import OperatorConfig
from steward.k8s.serving import AgentController, HeldEpochs, binding_of, is_fenced
from steward.k8s.settings import apply_settings
from tests.support.placement import T0, steward_node

DAEMON = {"daemon": {"command": ["sleep", "60"]}}


def node(name: str, labels: dict[str, str] | None = None) -> StewardNode:
    """A Ready host (no runtime conditions: the tables place daemons)."""
    return steward_node(name, labels=labels, docker=None, terraform=None)


NODES = [node("a", {"zone": "x"}), node("b", {"zone": "y"})]


def b(node_name: str | None, epoch: int, released_epoch: int | None = None) -> Binding:
    return Binding(node_name=node_name, epoch=epoch, released_epoch=released_epoch)


# --------------------------------------------------------------------------- the model
def test_binding_refuses_a_stale_presented_epoch_and_an_unmade_release() -> None:
    assert Binding(node_name="a", epoch=2, reported_epoch=2).reported_epoch == 2
    with pytest.raises(ValidationError, match="stale epoch"):
        Binding(node_name="a", epoch=3, reported_epoch=2)
    with pytest.raises(ValidationError, match="only a binding that was made"):
        Binding(node_name=None, epoch=3, released_epoch=4)
    with pytest.raises(ValidationError, match="a binding in force cannot be released"):
        Binding(node_name="a", epoch=3, released_epoch=3)  # its host still holds it
    assert Binding(node_name=None, epoch=3, released_epoch=3).released_epoch == 3  # a failover
    status = ManagedServiceStatus.model_validate(
        {"placement": {"nodeName": "a", "epoch": 2, "reportedEpoch": 2, "releasedEpoch": 1}}
    )
    assert status.placement == Binding(node_name="a", epoch=2, reported_epoch=2, released_epoch=1)


def test_crd_selects_by_node_and_fences_by_epoch() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["selectableFields"] == [{"jsonPath": ".status.placement.nodeName"}]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    rules = {r["rule"]: r["message"] for r in schema["placement"]["x-kubernetes-validations"]}
    fence = next(r for r in rules if "reportedEpoch" in r)
    assert "self.reportedEpoch == self.epoch" in fence and rules[fence] == STALE_EPOCH_MESSAGE
    assert any("oldSelf.releasedEpoch" in r for r in rules)
    in_force = next(r for r in rules if rules[r] == IN_FORCE_MESSAGE)
    assert "self.releasedEpoch < self.epoch" in in_force and "!has(self.nodeName)" in in_force


# --------------------------------------------------------------------------- released
@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        (None, True),  # never looked at
        (b(None, 0), True),  # never bound
        (b("a", 1), False),  # bound
        (b(None, 2), False),  # unbound from epoch 1's host, which has not answered
        (b(None, 2, released_epoch=1), True),  # ... which has
        (b(None, 4, released_epoch=1), False),  # an older release does not count
        (b(None, 4, released_epoch=3), True),
        (b("b", 4, released_epoch=3), False),  # bound again
    ],
)
def test_released(binding: Binding | None, expected: bool) -> None:
    assert released(binding) is expected


@pytest.mark.parametrize(
    ("binding", "finalizers", "expected"),
    [
        (None, ["steward.dev/finalizer"], True),
        (b(None, 2, 1), ["steward.dev/finalizer", "other"], True),
        (b(None, 2), ["steward.dev/finalizer"], False),  # a host may still run it
        (b("a", 1), ["steward.dev/finalizer"], False),  # its agent does it
        (None, ["other"], False),
    ],
)
def test_finalizer_removable(
    binding: Binding | None, finalizers: list[str], expected: bool
) -> None:
    assert finalizer_removable(binding, finalizers, "steward.dev/finalizer") is expected


# --------------------------------------------------------------------------- decide
def test_decide_binds_spreads_and_raises_the_epoch() -> None:
    first = decide("ns/s1", DAEMON, None, False, NODES, [], T0)
    assert first.verdict is Verdict.BIND and first.binding == Binding(
        node_name="a", epoch=1, bound_at=T0
    )
    assert first.condition == ("True", R.SCHEDULED, "Successfully assigned ns/s1 to a")
    assert first.event == ("Normal", R.SCHEDULED, "Successfully assigned ns/s1 to a")
    second = decide("ns/s2", DAEMON, None, False, NODES, [Bound.of("ns/s1", "a", None)], T0)
    assert second.binding is not None and second.binding.node_name == "b"
    again = decide("ns/s1", DAEMON, b(None, 2, released_epoch=1), False, NODES, [], T0)
    assert again.binding == Binding(node_name="a", epoch=3, bound_at=T0)


@pytest.mark.parametrize(
    ("spec", "binding", "deleting", "verdict", "reason"),
    [
        (DAEMON, b("a", 1), False, Verdict.SKIP, ""),
        (DAEMON, None, True, Verdict.SKIP, ""),
        ({}, None, False, Verdict.SKIP, ""),
        (DAEMON, b(None, 2), False, Verdict.WAIT, R.RELEASE_PENDING),
        ({**DAEMON, "placement": {"nodeSelector": {"zone": "z"}}}, None, False, Verdict.UNSCHEDULABLE, R.UNSCHEDULABLE),
        ({**DAEMON, "placement": {"nodeName": "nowhere"}}, None, False, Verdict.UNSCHEDULABLE, R.UNSCHEDULABLE),
        ({**DAEMON, "placement": {"nodeSelector": "bad"}}, None, False, Verdict.UNSCHEDULABLE, R.UNSCHEDULABLE),
        ({**DAEMON, "placement": {"nodeName": "b"}}, None, False, Verdict.BIND, R.SCHEDULED),
    ],
)  # fmt: skip
def test_decide(
    spec: dict[str, Any], binding: Binding | None, deleting: bool, verdict: Verdict, reason: str
) -> None:
    d = decide("ns/s", spec, binding, deleting, NODES, [], T0)
    assert (d.verdict, d.reason) == (verdict, reason)
    if verdict is Verdict.BIND:
        assert d.binding is not None and d.binding.node_name == "b"


def test_unschedulable_speaks_like_kube_scheduler() -> None:
    spec = {**DAEMON, "placement": {"nodeSelector": {"zone": "z"}}}
    d = decide("ns/s", spec, None, False, NODES, [], T0)
    message = "0/2 nodes are available: 2 node(s) didn't match node selector."
    assert d.condition == ("False", R.UNSCHEDULABLE, message)
    assert d.event == ("Warning", R.FAILED_SCHEDULING, message)
    wait = decide("ns/s", DAEMON, b(None, 5), False, NODES, [], T0)
    assert wait.condition is not None and "epoch 4" in wait.condition[2]
    assert wait.event is None


@pytest.mark.parametrize(
    ("spec", "flavor"),
    [
        (DAEMON, "daemon"),
        ({"container": {"image": "x"}}, "container"),
        ({"terraform": {"module": {"path": "/m"}}}, "terraform"),
        ({"daemon": None}, None),
        ({}, None),
    ],
)
def test_flavor_of(spec: dict[str, Any], flavor: str | None) -> None:
    assert flavor_of(spec) == flavor


def test_backoff_doubles_to_a_minute() -> None:
    assert [backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF]


# --------------------------------------------------------------------------- conditions
READY = {"type": "Ready", "status": "True", "reason": "Ready", "message": "running"}


def test_with_condition_adds_keeps_and_moves_the_time_only_on_a_flip() -> None:
    out = with_condition([READY], SCHEDULED, "False", R.UNSCHEDULABLE, "none", T0)
    assert out is not None and out[0] == READY
    assert out[1]["status"] == "False" and out[1]["lastTransitionTime"] == "2026-12-01T12:00:00Z"
    assert with_condition(out, SCHEDULED, "False", R.UNSCHEDULABLE, "none", T0) is None
    later = T0 + timedelta(minutes=1)
    reworded = with_condition(out, SCHEDULED, "False", R.UNSCHEDULABLE, "other", later)
    assert reworded is not None and reworded[1]["lastTransitionTime"] == "2026-12-01T12:00:00Z"
    flipped = with_condition(out, SCHEDULED, "True", R.SCHEDULED, "assigned", later)
    assert flipped is not None and flipped[1]["lastTransitionTime"] == "2026-12-01T12:01:00Z"


def test_merged_conditions_keep_what_the_agent_does_not_own() -> None:
    scheduled = {"type": SCHEDULED, "status": "True", "reason": "Scheduled"}
    old_ready = {**READY, "status": "False"}
    assert merged_conditions([READY], [old_ready, scheduled]) == [READY, scheduled]
    assert merged_conditions([READY], []) == [READY]


# --------------------------------------------------------------------------- the host's side
@pytest.mark.parametrize(
    ("binding", "epoch", "expected"),
    [
        (b("a", 2), 2, True),
        (b("a", 2), None, True),
        (b("a", 3), 2, False),  # bound here again, but a newer binding
        (b("b", 2), 2, False),
        (b(None, 3), 2, False),
        (None, None, False),
    ],
)
def test_holds(binding: Binding | None, epoch: int | None, expected: bool) -> None:
    assert holds(binding, "a", epoch) is expected


def test_release_never_destroys() -> None:
    assert release_action(destroys_on_stop=False) is ReleaseAction.STOP
    assert release_action(destroys_on_stop=True) is ReleaseAction.INTERRUPT


# --------------------------------------------------------------------------- the adapter
def agent(tmp_path: Path) -> AgentController:
    config = OperatorConfig(node="a", state_dir=tmp_path, kubeconfig=None)
    return AgentController(Clients(core=None, custom=None), config)  # type: ignore[arg-type]


def body(
    placement: dict[str, Any], conditions: list[dict[str, Any]] | None = None, rv: str = "7"
) -> kopf.Body:
    status = {"placement": placement, "state": "active", "conditions": conditions or []}
    meta = {"namespace": "ns", "name": "s", "resourceVersion": rv}
    return kopf.Body({"metadata": meta, "spec": DAEMON, "status": status})


def test_agent_presents_its_epoch_and_never_writes_the_binding(tmp_path: Path) -> None:
    ctl = agent(tmp_path)
    scheduled = {"type": SCHEDULED, "status": "True", "reason": "Scheduled"}
    live = body({"nodeName": "a", "epoch": 3, "boundAt": "2026-12-01T12:00:00Z"}, [scheduled])
    ctl.held["ns/s"] = 3
    out = ctl._outgoing(live, {"state": "active", "conditions": [READY]})
    assert out["placement"] == {
        "nodeName": "a",
        "epoch": 3,
        "boundAt": "2026-12-01T12:00:00Z",
        "reportedEpoch": 3,
    }
    assert out["conditions"] == [READY, scheduled]
    patch = ctl._presented(live, {"state": "active", "placement": {"nodeName": "x", "epoch": 9}})
    assert patch == {"state": "active", "placement": {"reportedEpoch": 3}}
    assert ctl.serves(live) and ctl._holds("ns/s", live)
    ctl.held["ns/s"] = 2  # a newer binding here: not the one this loop took
    assert ctl.serves(live) and not ctl._holds("ns/s", live)
    ctl.held["ns/s"] = 3
    ctl.wake("ns/s", gone=live)  # DELETED from the field-selected watch (its last state)
    assert not ctl._holds("ns/s", live) and ctl._left("ns/s", live)
    again = body({"nodeName": "a", "epoch": 5}, rv="9")  # bound here again: a newer body
    assert not ctl._left("ns/s", again) and ctl.serves(again)
    assert not ctl.serves(body({"nodeName": "b", "epoch": 4}))
    ctl.shutdown()


def test_held_epochs_survive_a_restart(tmp_path: Path) -> None:
    held = HeldEpochs(tmp_path)
    held.put("ns/s1", 3)
    held.put("ns/s2", 1)
    held.put("ns/s1", 4)
    held.drop("ns/s2")
    assert HeldEpochs(tmp_path).all() == {"ns/s1": 4}


def test_an_agent_watches_only_its_node() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, OperatorConfig(node="vm-2", kubeconfig=None))
    assert list(settings.watching.field_selectors.values()) == ["status.placement.nodeName=vm-2"]
    plain = kopf.OperatorSettings()
    apply_settings(plain, OperatorConfig(kubeconfig=None))
    assert not list(plain.watching.field_selectors.values())


def test_fenced_is_the_api_servers_stale_epoch_answer() -> None:
    import kubernetes

    stale = kubernetes.client.ApiException(status=422)
    stale.body = f'{{"message": "ManagedService \\"s\\" is invalid: {STALE_EPOCH_MESSAGE}"}}'
    other = kubernetes.client.ApiException(status=422)
    other.body = '{"message": "spec.daemon: Required value"}'
    assert is_fenced(stale) and not is_fenced(other)
    assert binding_of({"status": {"placement": {"nodeName": "a", "epoch": "x"}}}) is None
    assert binding_of({"status": {}}) is None


def test_placement_patch_writes_the_binding_exactly() -> None:
    from steward.engine.binding import placement_patch

    unbound = Binding(node_name=None, epoch=4, bound_at=T0)
    assert placement_patch(unbound) == {
        "nodeName": None,  # a merge patch keeps what it does not name: null unbinds
        "epoch": 4,
        "boundAt": "2026-12-01T12:00:00Z",
        "reportedEpoch": None,
        "fencedNodes": None,  # a clean unbinding forgets the fenced hosts
    }
    bound = Binding(node_name="a", epoch=5, bound_at=T0, released_epoch=3)
    assert "releasedEpoch" not in placement_patch(bound)  # the agents', kept


def test_a_refused_status_write_is_fenced(tmp_path: Path) -> None:
    import asyncio

    import kubernetes

    from steward.k8s.controller import Tracked
    from steward.k8s.serving import Fenced

    class Refusing:
        def patch_namespaced_custom_object_status(self, *args: Any) -> None:
            exc = kubernetes.client.ApiException(status=422)
            exc.body = f'{{"message": "{STALE_EPOCH_MESSAGE}"}}'
            raise exc

    ctl = agent(tmp_path)
    ctl.clients = Clients(core=None, custom=Refusing())  # type: ignore[arg-type]
    ctl.held["ns/s"] = 1
    live = body({"nodeName": "a", "epoch": 2})
    with pytest.raises(Fenced):
        asyncio.run(ctl._patch_status(live, Tracked(service=None), {"state": "inactive"}))
    ctl.shutdown()
