"""Placement live: `steward controller` binds, two `steward agent --serve` run what is bound.

Real processes against the real apiserver: one controller and two agents (each with its own
state directory, on this host), registered as StewardNodes. A sampler looks at both agents'
child processes every 100 ms (by a marker each service's environment carries) for the whole
module, and no sample may ever see two copies of one service.

* four daemons spread 2/2; each runs as a child of the agent of its node (the PID in status),
  and the other agent never started it;
* a nodeSelector that matches nothing: Scheduled=False, Unschedulable, kube-scheduler's
  message, one aggregated FailedScheduling Event; labelling a host binds it at once;
* a pin (spec.placement.nodeName) lands on its host even where spreading would not;
* rebinding (unbound with the epoch raised, as the controller does it, the old host cordoned):
  the old agent stops its copy and releases the epoch, only then is it bound to the other host
  and started there; the old epoch's status write is refused by the apiserver (422).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes
import psutil
import pytest

from steward.api.status import IN_FORCE_MESSAGE, STALE_EPOCH_MESSAGE, Binding
from steward.engine.binding import placement_patch
from steward.engine.placement import unbinding
from tests.support.copies import Sampling, marker
from tests.support.hosts import GROUP, VERSION, LiveHosts, condition, serving_hosts
from tests.support.hosts import placement_of as placement
from tests.support.processes import alive
from tests.support.waits import wait_for

MARK = "E2E_PLACEMENT_SERVICE"
"""Each service's daemon carries its name in this variable: how the sampler tells them apart."""


@dataclass
class Sampler(Sampling):
    """Every 100 ms: which agent's children run which service (marker, pid)."""

    agents: dict[str, int]
    samples: list[dict[str, list[tuple[str, int]]]] = field(default_factory=list)
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    """(node, service, pid) ever seen."""

    def sample(self) -> dict[str, list[tuple[str, int]]]:
        found: dict[str, list[tuple[str, int]]] = {}
        for node, pid in self.agents.items():
            try:
                children = psutil.Process(pid).children()
            except psutil.NoSuchProcess:
                continue
            for child in children:
                if name := marker(child, MARK):
                    found.setdefault(name, []).append((node, child.pid))
                    self.seen.add((node, name, child.pid))
        return found

    def record(self) -> None:
        self.samples.append(self.sample())

    def pids_by_name(self) -> dict[str, set[int]]:
        pids: dict[str, set[int]] = {}
        for _, name, pid in self.seen:
            pids.setdefault(name, set()).add(pid)
        return pids

    def max_copies(self, service: str | None = None) -> int:
        return max(
            (len(v) for s in self.samples for k, v in s.items() if service in (None, k)),
            default=0,
        )

    def nodes_of(self, service: str) -> set[str]:
        return {node for node, name, _ in self.seen if name == service}

    def wait_seen(self, service: str, pid: int) -> None:
        """Until a sample has seen ``pid`` (a sample takes a while: it reads environments)."""
        wait_for(
            lambda: any(n == service and p == pid for _, n, p in self.seen),
            timeout=10,
            step=0.05,
            what=f"the sampler to see {service} (pid {pid})",
        )


@dataclass(kw_only=True)
class Hosts(LiveHosts):
    sampler: Sampler

    def pid_of(self, name: str) -> int:
        return int(self.get(name)["status"]["runtime"]["pid"])


def parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope="module")
def hosts(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    with serving_hosts(
        Hosts, control_plane, tmp_path_factory.mktemp("placement"), "placement", "pl", MARK,
        lambda agents: Sampler({node: p.pid for node, p in agents.items()}),
        agent_args=lambda host: ["--label", f"zone={host}"],
    ) as live:  # fmt: skip
        yield live


def test_spread_pins_and_unschedulable(hosts: Hosts) -> None:
    a, b = hosts.nodes
    names = [f"s{i}" for i in range(1, 5)]
    for name in names:
        hosts.create(name)
    objs = {n: wait_for(lambda n=n: hosts.ready(n), timeout=60, what=f"{n} Ready") for n in names}
    where = {n: placement(o).get("nodeName") for n, o in objs.items()}
    assert sorted(where.values()) == [a, a, b, b], where  # spread 2/2
    for name, obj in objs.items():
        p = placement(obj)
        assert (p["epoch"], p.get("reportedEpoch")) == (1, 1), p
        scheduled = condition(obj, "Scheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("True", "Scheduled"), scheduled
        assert [e.count for e in hosts.events(name, "Scheduled")] == [1]
        # Run by the agent of its node: the PID in status is that agent's child.
        pid = int(obj["status"]["runtime"]["pid"])
        assert parent(pid) == hosts.agent_pid(where[name]), (name, pid)
    for name in names:
        hosts.sampler.wait_seen(name, hosts.pid_of(name))
        assert hosts.sampler.nodes_of(name) == {where[name]}, (name, hosts.sampler.seen)

    # A nodeSelector that matches nothing: unschedulable, with kube-scheduler's words.
    hosts.create("nowhere", {"nodeSelector": {"e2e-run": hosts.run, "zone": "nowhere"}})

    def unschedulable() -> dict[str, Any] | None:
        obj = hosts.get("nowhere")
        return obj if condition(obj, "Scheduled").get("reason") == "Unschedulable" else None

    obj = wait_for(unschedulable, timeout=30, what="Scheduled=False Unschedulable")
    scheduled = condition(obj, "Scheduled")
    assert scheduled["status"] == "False"
    total = len(hosts.custom.list_cluster_custom_object(GROUP, VERSION, "stewardnodes")["items"])
    if total == 2:  # only this module's hosts registered: the whole message is known
        message = "0/2 nodes are available: 2 node(s) didn't match node selector."
        assert scheduled["message"] == message, scheduled
    else:
        assert scheduled["message"].startswith(f"0/{total} nodes are available: "), scheduled
        assert "didn't match node selector" in scheduled["message"], scheduled
    assert not placement(obj).get("nodeName")
    # Retried with back-off, as ONE Event whose count grows.
    failed = wait_for(
        lambda: (e := hosts.events("nowhere", "FailedScheduling")) and e[0].count >= 4 and e,
        timeout=30,
        what="four scheduling attempts",
    )
    assert len(failed) == 1 and failed[0].type == "Warning", failed
    assert failed[0].message == scheduled["message"]
    assert "nowhere" not in hosts.sampler.sample()
    # A StewardNode change retries at once (the next back-off retry is ~8 s away).
    changed = time.monotonic()
    hosts.patch_node(b, {"metadata": {"labels": {"zone": "nowhere"}}})
    bound = wait_for(
        lambda: placement(o := hosts.get("nowhere")).get("nodeName") and o,
        timeout=30,
        what="bound after the label",
    )
    assert placement(bound)["nodeName"] == b
    assert time.monotonic() - changed < 4, "bound by the node event, not by the back-off"
    wait_for(lambda: hosts.ready("nowhere"), timeout=60, what="nowhere Ready on b")

    # A pin lands on its host (b holds 3 now: spreading alone would pick a).
    hosts.create("pinned", {"nodeName": b})
    obj = wait_for(lambda: hosts.ready("pinned"), timeout=60, what="pinned Ready")
    assert placement(obj)["nodeName"] == b
    assert parent(int(obj["status"]["runtime"]["pid"])) == hosts.agent_pid(b)
    hosts.sampler.wait_seen("pinned", int(obj["status"]["runtime"]["pid"]))
    assert hosts.sampler.nodes_of("pinned") == {b}

    for name in [*names, "nowhere", "pinned"]:
        hosts.delete(name)
    for name in [*names, "nowhere", "pinned"]:
        wait_for(lambda n=name: hosts.gone(n), timeout=60, what=f"{name} deleted")
    assert hosts.sampler.max_copies() == 1, "two copies of one service were seen at once"
    hosts.patch_node(b, {"metadata": {"labels": {"zone": "b"}}})


def test_rebinding_moves_without_two_copies_and_fences_the_old_epoch(hosts: Hosts) -> None:
    hosts.create("mover")
    obj = wait_for(lambda: hosts.ready("mover"), timeout=60, what="mover Ready")
    old = Binding.model_validate(placement(obj))
    assert old.node_name is not None
    new_node = next(n for n in hosts.nodes if n != old.node_name)
    old_pid = int(obj["status"]["runtime"]["pid"])
    assert parent(old_pid) == hosts.agent_pid(old.node_name)
    hosts.sampler.wait_seen("mover", old_pid)
    hosts.patch_node(old.node_name, {"spec": {"unschedulable": True}})  # cordon: it must move
    try:
        # Unbind exactly as the controller does it: epoch raised, reportedEpoch cleared,
        # preconditioned on the resourceVersion read.
        released = unbinding(old, datetime.now(UTC))
        assert released is not None and released.epoch == old.epoch + 1
        hosts.patch_status(
            "mover", {"placement": placement_patch(released)}, obj["metadata"]["resourceVersion"]
        )

        def moved() -> dict[str, Any] | None:
            o = hosts.ready("mover")
            return o if o is not None and placement(o).get("nodeName") == new_node else None

        obj = wait_for(moved, timeout=60, what=f"mover Ready on {new_node}")
        p = placement(obj)
        assert p["epoch"] == old.epoch + 2 and p["reportedEpoch"] == old.epoch + 2, p
        assert p["releasedEpoch"] == old.epoch, p  # the old host said it stopped first
        new_pid = int(obj["status"]["runtime"]["pid"])
        assert new_pid != old_pid and not alive(old_pid)
        assert parent(new_pid) == hosts.agent_pid(new_node)
        hosts.sampler.wait_seen("mover", new_pid)
        assert hosts.sampler.nodes_of("mover") == {old.node_name, new_node}
        assert hosts.sampler.max_copies("mover") == 1, "two copies at once"
        # The samples show the old copy gone before the new one: a gap between them.
        runs = [tuple(s.get("mover", ())) for s in hosts.sampler.samples]
        first_new = next(i for i, r in enumerate(runs) if r and r[0][0] == new_node)
        last_old = max(i for i, r in enumerate(runs) if r and r[0][0] == old.node_name)
        assert last_old < first_new, (last_old, first_new)
        assert [e.count for e in hosts.events("mover", "Released")] == [1]

        # The old host's epoch is over: the apiserver refuses a write presenting it.
        with pytest.raises(kubernetes.client.ApiException) as refused:
            hosts.patch_status(
                "mover", {"state": "inactive", "placement": {"reportedEpoch": old.epoch}}
            )
        assert refused.value.status == 422
        assert STALE_EPOCH_MESSAGE in json.loads(refused.value.body)["message"]
        # Nor can the binding in force be released: the controller would bind it elsewhere.
        with pytest.raises(kubernetes.client.ApiException) as refused:
            hosts.patch_status("mover", {"placement": {"releasedEpoch": p["epoch"]}})
        assert refused.value.status == 422
        assert IN_FORCE_MESSAGE in json.loads(refused.value.body)["message"]
        assert hosts.get("mover")["status"]["state"] == "active"
        assert alive(new_pid)
    finally:
        hosts.patch_node(old.node_name, {"spec": {"unschedulable": False}})
    hosts.delete("mover")
    wait_for(lambda: hosts.gone("mover"), timeout=60, what="mover deleted")
    assert not alive(new_pid)
    assert hosts.sampler.max_copies() == 1


def test_a_new_epoch_on_the_same_host_restarts_it_under_that_epoch(hosts: Hosts) -> None:
    """A binding written anew for the host that runs it (epoch raised, reportedEpoch cleared):
    the agent's copy belongs to a binding that is over, so it stops it (and releases that
    epoch), then starts afresh under the new one."""
    hosts.create("renewed")
    obj = wait_for(lambda: hosts.ready("renewed"), timeout=60, what="renewed Ready")
    old = Binding.model_validate(placement(obj))
    assert old.node_name is not None
    old_pid = int(obj["status"]["runtime"]["pid"])
    hosts.sampler.wait_seen("renewed", old_pid)
    again = Binding(node_name=old.node_name, epoch=old.epoch + 1, bound_at=datetime.now(UTC))
    hosts.patch_status(
        "renewed", {"placement": placement_patch(again)}, obj["metadata"]["resourceVersion"]
    )

    def restarted() -> dict[str, Any] | None:
        o = hosts.ready("renewed")
        if o is None or placement(o).get("reportedEpoch") != again.epoch:
            return None
        return o if o["status"]["runtime"].get("pid") != old_pid else None

    obj = wait_for(restarted, timeout=60, what="renewed Ready under the new epoch")
    p = placement(obj)
    assert (p["nodeName"], p["epoch"], p["releasedEpoch"]) == (
        old.node_name,
        again.epoch,
        old.epoch,
    )
    new_pid = int(obj["status"]["runtime"]["pid"])
    assert new_pid != old_pid and not alive(old_pid)
    assert parent(new_pid) == hosts.agent_pid(old.node_name)
    hosts.sampler.wait_seen("renewed", new_pid)
    assert hosts.sampler.nodes_of("renewed") == {old.node_name}
    assert hosts.sampler.max_copies("renewed") == 1
    hosts.delete("renewed")
    wait_for(lambda: hosts.gone("renewed"), timeout=60, what="renewed deleted")


def test_deleting_a_service_no_host_runs(hosts: Hosts) -> None:
    """Unbound and released, with every host cordoned: no agent sees it any more, so the
    controller removes the agents' finalizer when it is deleted."""
    hosts.create("parked")
    obj = wait_for(lambda: hosts.ready("parked"), timeout=60, what="parked Ready")
    old = Binding.model_validate(placement(obj))
    pid = int(obj["status"]["runtime"]["pid"])
    assert "steward.dev/finalizer" in obj["metadata"]["finalizers"]
    for node in hosts.nodes:
        hosts.patch_node(node, {"spec": {"unschedulable": True}})
    try:
        released = unbinding(old, datetime.now(UTC))
        assert released is not None
        hosts.patch_status(
            "parked", {"placement": placement_patch(released)}, obj["metadata"]["resourceVersion"]
        )

        def parked() -> dict[str, Any] | None:
            o = hosts.get("parked")
            p = placement(o)
            scheduled = condition(o, "Scheduled")
            ok = p.get("releasedEpoch") == old.epoch and scheduled.get("status") == "False"
            return o if ok and scheduled.get("reason") == "Unschedulable" else None

        obj = wait_for(parked, timeout=30, what="released, and unschedulable")
        assert not placement(obj).get("nodeName")
        assert obj["status"]["state"] == "inactive"  # the old host's last word
        assert "were unschedulable" in condition(obj, "Scheduled")["message"]
        assert not alive(pid)
        hosts.delete("parked")
        wait_for(lambda: hosts.gone("parked"), timeout=30, what="parked deleted by the controller")
    finally:
        for node in hosts.nodes:
            hosts.patch_node(node, {"spec": {"unschedulable": False}})
    assert hosts.sampler.max_copies("parked") == 1
