"""`steward controller`'s host monitor: Leases → lost hosts → NodeLost or failover.

The decisions are :mod:`steward.engine.hosts`'s; this lists the Leases (one request per
``node_monitor_period``, whatever the number of hosts), keeps when each last changed on this
process's monotonic clock, and writes:

* a lost host's StewardNode ``Ready=Unknown`` (``NodeStatusUnknown``), so placement skips it;
* each of its services ``Ready=Unknown`` (``NodeLost``) and one Warning Event, once per loss;
* for a service the policy lets move (AfterFencing once ``replaceAfterSeconds`` passed, or any
  service of a host tainted ``node.kubernetes.io/out-of-service``): the unbinding with the
  epoch released on the fenced host's behalf, preconditioned on the resourceVersion read, so
  the scheduler binds it elsewhere. Pinned services (``spec.placement.nodeName``) never move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import kubernetes

from steward.api import reasons as R
from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import NODE_PLURAL, NODE_READY, StewardNode
from steward.api.placement import Failover
from steward.api.status import Binding, utcnow
from steward.engine import hosts as H
from steward.engine.binding import placement_patch, with_condition
from steward.engine.placement import fenced_unbinding
from steward.k8s.background import BackgroundLoop
from steward.k8s.serving import binding_of, placement_of

log = logging.getLogger("steward.controller.hosts")

NODE_LABEL = "steward.dev/node"
LEASE_SELECTOR = "app.kubernetes.io/managed-by=steward"


def released_unbinding(binding: Binding) -> dict[str, Any]:
    """``status.placement`` for a fenced host's service: unbound (epoch + 1) and the old
    epoch released on the host's behalf, so the scheduler binds it elsewhere."""
    moved = fenced_unbinding(binding, utcnow())
    return {**placement_patch(moved), "releasedEpoch": binding.epoch}


class HostMonitor(BackgroundLoop):
    """One loop: list the Leases, judge every host, act on the services of the lost ones."""

    def __init__(self, scheduler: Any) -> None:
        self.sched = scheduler
        cfg = scheduler.config
        self.period: float = cfg.node_monitor_period
        self.grace: float = cfg.node_grace
        self.share: float = cfg.storm_share
        self.lease_namespace: str = cfg.lease_namespace
        self.started = time.monotonic()
        self.seen: dict[str, H.Seen] = {}
        self.guard = H.Guard(quiet_since=self.started)
        self.last_good = self.started
        """When the Leases were last listed (the controller's monotonic clock)."""
        self.lost: set[str] = set()
        self.marked: set[str] = set()
        """Services on a lost host already written NodeLost (with their Event)."""
        self.nodes_marked: set[str] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                leases = await loop.run_in_executor(None, self._leases)
                now = time.monotonic()
                if H.blind(self.last_good, now, self.period):
                    log.warning(
                        "could not list the Leases for %.1f s: every host gets a full grace",
                        now - self.last_good,
                    )
                    self.seen, self.guard = H.regained_sight(self.seen, now)
                self.last_good = now
                await self.round(leases, now)
            except Exception:
                log.exception("host monitor round failed")
            await asyncio.sleep(self.period)

    def _leases(self) -> dict[str, str]:
        """node -> renewTime (as text) of every agent's Lease."""
        api = kubernetes.client.CoordinationV1Api(self.sched.clients.core.api_client)
        found = api.list_namespaced_lease(
            self.lease_namespace, label_selector=LEASE_SELECTOR, _request_timeout=(3, 10)
        )
        out: dict[str, str] = {}
        for lease in found.items:
            node = ((lease.metadata.labels if lease.metadata else None) or {}).get(NODE_LABEL)
            if node and lease.spec is not None:
                out[node] = str(lease.spec.renew_time)
        return out

    async def round(self, leases: dict[str, str], now: float) -> None:
        for node, renew in leases.items():
            self.seen[node] = H.observe(self.seen.get(node), renew, now)
        nodes = {n.name: n for n in self.sched._nodes(raw=True)}
        lost = H.lost_hosts(self.seen, nodes, now, self.started, self.grace)
        self.guard = H.guard(self.guard, len(nodes), len(lost), self.share, now)
        allowed = H.may_fail_over(self.guard, now, self.grace)
        if lost != self.lost:
            log.info(
                "lost hosts: %s (storm guard %s)",
                sorted(lost) or "none",
                "holds" if not allowed else "open",
            )
        self.lost = lost
        self.nodes_marked &= lost
        loop = asyncio.get_running_loop()
        for name in sorted(lost - self.nodes_marked):
            silent = H.silent_for(self.seen.get(name), now, self.started)
            await loop.run_in_executor(None, self._mark_node, nodes[name], silent)
            self.nodes_marked.add(name)
        on_lost = [b for b in self.sched._bindings() if b.node in lost]
        self.marked &= {b.service for b in on_lost}
        for bound in on_lost:
            host = nodes.get(bound.node)
            silent = H.silent_for(self.seen.get(bound.node), now, self.started)
            oos = host is not None and any(t.key == H.OUT_OF_SERVICE for t in host.spec.taints)
            act = H.action(bound.failover, True, silent, oos and not bound.pinned, allowed)
            if act is H.Action.MARK_LOST and bound.service in self.marked:
                continue  # NodeLost is written: nothing to read or write until it may move
            await loop.run_in_executor(
                None, self._judge, bound.service, bound.node, silent, oos, allowed
            )

    # ------------------------------------------------------------ writes (worker threads)
    def _mark_node(self, node: StewardNode, silent: float) -> None:
        ready = node.status.condition(NODE_READY)
        if ready is not None and ready.status != "True":
            return  # said goodbye (AgentStopped) or marked already: keep its words
        conditions = with_condition(
            [
                c.model_dump(mode="json", by_alias=True, exclude_none=True)
                for c in node.status.conditions
            ],
            NODE_READY,
            "Unknown",
            R.NODE_STATUS_UNKNOWN,
            f"the agent stopped renewing its Lease {silent:.0f} s ago (grace {self.grace:.0f} s)",
            utcnow(),
        )
        if conditions is None:
            return
        with contextlib.suppress(kubernetes.client.ApiException):
            self.sched.clients.custom.patch_cluster_custom_object_status(
                API_GROUP,
                API_VERSION,
                NODE_PLURAL,
                node.name,
                {"status": {"conditions": conditions}},
            )
            log.warning("StewardNode %s lost (%.0f s without a renewal)", node.name, silent)

    def _judge(self, key: str, node: str, silent: float, oos: bool, allowed: bool) -> None:
        namespace, _, name = key.partition("/")
        custom = self.sched.clients.custom
        try:
            obj: Any = custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        binding = binding_of(obj)
        if binding is None or binding.node_name != node:
            return
        placement = placement_of(obj.get("spec"))
        failover = placement.failover if placement is not None else Failover()
        pinned = placement is not None and placement.node_name is not None
        act = H.action(failover, True, silent, oos and not pinned, allowed)
        if pinned and act is H.Action.REPLACE:
            act = H.Action.MARK_LOST
        live = obj.get("status") or {}
        status: dict[str, Any] = {}
        conditions = with_condition(
            live.get("conditions") or [],
            "Ready",
            "Unknown",
            R.NODE_LOST,
            H.lost_message(node, silent, self.grace),
            utcnow(),
        )
        if conditions is not None:
            status["conditions"] = conditions
        event: tuple[str, str, str] | None = None
        if act is H.Action.REPLACE:
            status["placement"] = released_unbinding(binding)
            event = ("Warning", R.FAILED_OVER, H.replaced_message(node, silent, failover, oos))
        elif key not in self.marked:
            event = ("Warning", R.NODE_LOST, H.lost_message(node, silent, self.grace))
        if not status and event is None:
            return
        if status:
            body = {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": status,
            }
            try:
                custom.patch_namespaced_custom_object_status(
                    API_GROUP, API_VERSION, namespace, PLURAL, name, body
                )
            except kubernetes.client.ApiException as exc:
                if exc.status in (404, 409):
                    return  # gone, or written meanwhile: judged again next round
                raise
        self.marked.add(key)
        if act is H.Action.REPLACE:
            log.warning(
                "%s: failed over from lost host %s (epoch %d released)", key, node, binding.epoch
            )
        if event is not None:
            self.sched._record(obj, event)


class FailoverRefused(Exception):
    """`steward failover` would risk two copies: the host still looks alive."""


def manual_failover(custom: Any, namespace: str, name: str, force: bool = False) -> str:
    """`steward failover NAME`: the admin's word that the service's host is down.

    Refused while the host's StewardNode is Ready=True (its agent renews: moving it would
    run two copies), unless ``force``. Writes what the controller writes for a fenced host:
    the unbinding with the old epoch released, on the object as read.
    """
    obj: Any = custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
    binding = binding_of(obj)
    if binding is None or binding.node_name is None:
        raise FailoverRefused(f"{namespace}/{name} is not bound to any host")
    node = binding.node_name
    try:
        host: Any = custom.get_cluster_custom_object(API_GROUP, API_VERSION, NODE_PLURAL, node)
        ready = StewardNode.parse(host).status.condition(NODE_READY)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
        ready = None
    if ready is not None and ready.status == "True" and not force:
        raise FailoverRefused(
            f"host {node} is Ready (its agent renews its Lease): moving {name} would run it "
            "twice; cordon and drain the host instead, or pass --force if you know it is down"
        )
    body = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "status": {"placement": released_unbinding(binding)},
    }
    custom.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, PLURAL, name, body
    )
    return (
        f"managedservice {namespace}/{name} failed over from {node} "
        f"(epoch {binding.epoch} released); the controller binds it elsewhere"
    )
