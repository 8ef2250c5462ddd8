"""`steward controller`: binds ManagedServices to StewardNodes. Decisions are
:mod:`steward.engine.binding`'s (and :mod:`steward.engine.placement`'s); this translates.

kube-scheduler's shape, on kopf:

* Two kopf indices (StewardNodes, and what each ManagedService takes where it is bound) are
  the caches; kopf calls no handler before both are listed, so the first decision already
  sees every host and every binding.
* Every event of a ManagedService that is not bound puts it in the queue; one worker decides
  one service at a time (so each decision sees the ones before it: what it bound is
  *assumed* until the watch shows it), writes ``status.placement`` with the ``Scheduled``
  condition through the status subresource, preconditioned on the resourceVersion it decided
  on (a 409 means: read again and decide again, shortly), and posts one aggregated Event.
* An unschedulable service is retried with back-off (1 s doubling to 1 min), and at once when
  a StewardNode changes.
* A service being deleted that no host runs (unbound and released, or never bound) has its
  agents' finalizer removed here: no agent sees it any more.

These handlers are on their own registry, so `steward run` never has them. HA is kopf
peering, as for `steward run` (``--peering``): a paused peer takes in no events; what was in
its queue is harmless, since every write is conditional on a fresh read and the decision is
deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import logging
import time
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes

from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import NODE_PLURAL, StewardNode
from steward.api.status import Binding, utcnow
from steward.engine.binding import (
    CONFLICT_BACKOFF,
    SCHEDULED,
    Verdict,
    backoff,
    decide,
    finalizer_removable,
    placement_patch,
    with_condition,
)
from steward.engine.hosts import as_lost
from steward.engine.placement import Bound
from steward.k8s.background import BackgroundLoop
from steward.k8s.clients import Clients, build_clients
from steward.k8s.config import OperatorConfig
from steward.k8s.events import EventRecorder, ObjectRef
from steward.k8s.exposure import Exposer
from steward.k8s.failover import HostMonitor
from steward.k8s.login import login
from steward.k8s.serving import binding_of, placement_of
from steward.k8s.settings import PREFIX, apply_settings

log = logging.getLogger("steward.controller")

REGISTRY = kopf.OperatorRegistry()
"""The controller's handlers only (``steward run`` and agents use kopf's default registry)."""
SERVICES = (API_GROUP, API_VERSION, PLURAL)
NODES = (API_GROUP, API_VERSION, NODE_PLURAL)
AGENT_FINALIZER = f"{PREFIX}/finalizer"
OWN_FINALIZER = f"{PREFIX}/controller"
"""kopf's finalizer setting here: never set (no handler needs one), and not the agents', which
kopf would otherwise remove from every object as "required by no handler"."""


def _key(meta: Any) -> str:
    return f"{meta.get('namespace')}/{meta['name']}"


class Scheduler(BackgroundLoop):
    """The queue, the worker and the writes; ``nodes``/``bound`` are kopf's indices."""

    def __init__(self, clients: Clients, config: OperatorConfig) -> None:
        self.clients = clients
        self.config = config
        self.recorder = EventRecorder(clients.core, config.instance)
        self.objects: dict[str, dict[str, Any]] = {}
        """The latest body of every ManagedService not bound (what a decision reads)."""
        self.nodes: kopf.Index[str, StewardNode] | None = None
        self.bound: kopf.Index[str, Bound] | None = None
        self.assumed: dict[str, Bound] = {}
        """What this controller bound, until the watch shows it."""
        self.attempts: dict[str, int] = {}
        self.waiting: set[str] = set()
        """Unschedulable or waiting for a release: retried at once when a host changes."""
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self.bindings_written = 0
        self.monitor: HostMonitor | None = None

    # ------------------------------------------------------------ intake (kopf handlers)
    def observe_service(
        self,
        event: kopf.RawEvent,
        nodes: kopf.Index[str, StewardNode],
        bound: kopf.Index[str, Bound],
    ) -> None:
        self.nodes, self.bound = nodes, bound
        obj = event["object"]
        key = _key(obj["metadata"])
        if event.get("type") == "DELETED":
            self.objects.pop(key, None)
            self.assumed.pop(key, None)
            self._forget(key)
            return
        binding = binding_of(obj)
        node = binding.node_name if binding is not None else None
        assumed = self.assumed.get(key)
        if assumed is not None and assumed.node == node:
            del self.assumed[key]  # the watch caught up with what this controller bound
        if node is None or obj["metadata"].get("deletionTimestamp"):
            self.objects[key] = copy.deepcopy(dict(obj))
            self.enqueue(key)
        else:  # bound: nothing to decide (the index has what it takes)
            self.objects.pop(key, None)
            self._forget(key)

    def observe_node(self, event: kopf.RawEvent) -> None:
        for key in list(self.waiting):
            self.enqueue(key)

    # ------------------------------------------------------------ the queue
    def enqueue(self, key: str, delay: float = 0.0) -> None:
        when = time.monotonic() + delay
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        self._wake.set()

    def _forget(self, key: str) -> None:
        self._due.pop(key, None)
        self.attempts.pop(key, None)
        self.waiting.discard(key)

    def _next(self) -> tuple[str | None, float]:
        """The key due now, or how long until one is."""
        while self._heap:
            when, key = self._heap[0]
            if self._due.get(key) != when:
                heapq.heappop(self._heap)  # superseded
                continue
            now = time.monotonic()
            if when > now:
                return None, when - now
            heapq.heappop(self._heap)
            del self._due[key]
            return key, 0.0
        return None, 3600.0

    async def run(self) -> None:
        while True:
            key, wait = self._next()
            if key is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            try:
                await self.schedule(key)
            except Exception:
                log.exception("placement of %s failed", key)
                self.enqueue(key, backoff(self.attempts.get(key, 0)))

    # ------------------------------------------------------------ one decision
    def _nodes(
        self, raw: bool = False, fresh: dict[str, StewardNode | None] | None = None
    ) -> list[StewardNode]:
        """Every StewardNode; a host the monitor judges lost as ``Ready=Unknown`` (its own
        status may still say True: the agent that would correct it is the one gone).
        ``fresh``: hosts just read from the API, in place of the index's (None: gone)."""
        if self.nodes is None:
            return []
        found = sorted((n for name in self.nodes for n in self.nodes[name]), key=lambda n: n.name)
        if fresh:
            found = [f for n in found if (f := fresh.get(n.name, n)) is not None]
        lost = self.monitor.lost if self.monitor is not None and not raw else set()
        return [as_lost(n) if n.name in lost else n for n in found]

    def _bindings(self) -> Iterator[Bound]:
        yield from self.assumed.values()
        if self.bound is None:
            return
        for key in self.bound:
            if key not in self.assumed:
                yield from self.bound[key]

    async def schedule(self, key: str) -> None:
        obj = self.objects.get(key)
        if obj is None:
            return
        meta = obj["metadata"]
        binding = binding_of(obj)
        deleting = bool(meta.get("deletionTimestamp"))
        loop = asyncio.get_running_loop()
        if deleting:
            if finalizer_removable(binding, meta.get("finalizers") or (), AGENT_FINALIZER):
                await loop.run_in_executor(None, self._release_finalizer, key, obj)
            return
        decision = decide(
            key, obj.get("spec") or {}, binding, False, self._nodes(), self._bindings(), utcnow()
        )
        if decision.verdict is Verdict.SKIP:
            self._forget(key)
            return
        chosen = decision.binding.node_name if decision.binding is not None else None
        if decision.verdict is Verdict.BIND and chosen is not None:
            # The StewardNodes index may lag behind a write that just landed (a drain
            # cordons, then unbinds at once): the chosen host is read fresh, and a decision
            # that would differ on it is made again shortly, on the index caught up.
            fresh = await loop.run_in_executor(None, self._fresh_node, chosen)
            spec = obj.get("spec") or {}
            nodes = self._nodes(fresh={chosen: fresh})
            again = decide(key, spec, binding, False, nodes, self._bindings(), utcnow())
            if again.binding is None or again.binding.node_name != chosen:
                self.enqueue(key, CONFLICT_BACKOFF)
                return
        status: dict[str, Any] = {}
        if decision.binding is not None:
            status["placement"] = placement_patch(decision.binding)
        condition = decision.condition
        if condition is not None:
            conditions = with_condition(
                (obj.get("status") or {}).get("conditions") or [], SCHEDULED, *condition, utcnow()
            )
            if conditions is not None:
                status["conditions"] = conditions
        if status:
            written = await loop.run_in_executor(None, self._write, key, obj, status)
            if written is None:
                return  # conflict or gone: handled
        if decision.verdict is Verdict.BIND:
            assert decision.binding is not None and decision.binding.node_name is not None
            self.assumed[key] = Bound.of(
                key, decision.binding.node_name, placement_of(obj.get("spec"))
            )
            self.bindings_written += 1
            self.objects.pop(key, None)
            self._forget(key)
            log.info(
                "%s bound to %s (epoch %d)", key, decision.binding.node_name, decision.binding.epoch
            )
        else:
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            self.waiting.add(key)
            self.enqueue(key, backoff(attempt))
        if decision.event is not None:
            await loop.run_in_executor(None, self._record, obj, decision.event)

    # ------------------------------------------------------------ API calls (worker threads)
    def _fresh_node(self, name: str) -> StewardNode | None:
        """The StewardNode as the API has it now (None: gone)."""
        try:
            obj: Any = self.clients.custom.get_cluster_custom_object(
                API_GROUP, API_VERSION, NODE_PLURAL, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return StewardNode.parse(obj)

    def _write(self, key: str, obj: dict[str, Any], status: dict[str, Any]) -> Any:
        """The status patch, preconditioned on the resourceVersion decided on; the new body."""
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        try:
            written: Any = self.clients.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, meta["namespace"], PLURAL, meta["name"], body
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                self.objects.pop(key, None)
                self._forget(key)
                return None
            if exc.status == 409:  # someone wrote first: read again, decide again
                self._reread(key, meta)
                self.enqueue(key, CONFLICT_BACKOFF)
                return None
            raise
        self.objects[key] = written
        return written

    def _reread(self, key: str, meta: Any) -> None:
        try:
            fresh: Any = self.clients.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, meta["namespace"], PLURAL, meta["name"]
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                self.objects.pop(key, None)
                return
            raise
        current = self.objects.get(key)
        # Keep whichever is newer: the watch may have brought a later one meanwhile.
        if current is None or int(current["metadata"]["resourceVersion"]) <= int(
            fresh["metadata"]["resourceVersion"]
        ):
            self.objects[key] = fresh

    def _release_finalizer(self, key: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        rest = [f for f in meta.get("finalizers") or () if f != AGENT_FINALIZER]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": rest}}
        try:
            self.clients.custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, meta["namespace"], PLURAL, meta["name"], body
            )
            log.info("%s: no host runs it; finalizer removed", key)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                self._reread(key, meta)
                self.enqueue(key, CONFLICT_BACKOFF)
            elif exc.status != 404:
                raise

    def _record(self, obj: dict[str, Any], event: tuple[str, str, str]) -> None:
        meta = obj["metadata"]
        ref = ObjectRef(
            api_version=str(obj.get("apiVersion") or f"{API_GROUP}/{API_VERSION}"),
            kind=str(obj.get("kind") or "ManagedService"),
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta["name"]),
            uid=str(meta.get("uid") or ""),
        )
        self.recorder.record(ref, *event)
        self.recorder.flush(ref)


def scheduler(memo: kopf.Memo) -> Scheduler:
    found: Scheduler | None = getattr(memo, "scheduler", None)
    assert found is not None, "controller not started"
    return found


# --------------------------------------------------------------------------- kopf handlers
kopf.on.login(registry=REGISTRY)(login)  # the --kubeconfig given, as steward run's


@kopf.on.startup(registry=REGISTRY)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = getattr(memo, "config", None) or OperatorConfig.from_env()
    apply_settings(settings, config)
    settings.persistence.finalizer = OWN_FINALIZER
    clients = build_clients(config.kubeconfig)
    sched = Scheduler(clients, config)
    memo.scheduler = sched
    memo.exposer = Exposer(clients, sched.recorder)
    await memo.exposer.start(config.namespaces)
    sched.start()
    sched.monitor = HostMonitor(sched)
    sched.monitor.start()


@kopf.on.cleanup(registry=REGISTRY)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    sched: Scheduler | None = getattr(memo, "scheduler", None)
    if sched is not None:
        if sched.monitor is not None:
            await sched.monitor.stop()
        await sched.stop()


@kopf.index(*NODES, registry=REGISTRY)
def stewardnodes(name: str, body: kopf.Body, **_: Any) -> dict[str, StewardNode]:
    """Every StewardNode, as placement reads it."""
    return {name: StewardNode.parse(copy.deepcopy(dict(body)))}


def _is_bound(body: kopf.Body, **_: Any) -> bool:
    binding = binding_of(body)
    return binding is not None and binding.node_name is not None


@kopf.index(*SERVICES, registry=REGISTRY, when=_is_bound)
def bindings(body: kopf.Body, **_: Any) -> dict[str, Bound]:
    """What each bound ManagedService takes on its host (an unbound one is not indexed)."""
    binding: Binding | None = binding_of(body)
    assert binding is not None and binding.node_name is not None
    key = _key(body.meta)
    return {key: Bound.of(key, binding.node_name, placement_of(body.get("spec")))}


@kopf.on.event(*SERVICES, registry=REGISTRY)
async def service_event(event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
    # The indices arrive as keyword arguments named after their handlers.
    scheduler(memo).observe_service(event, kwargs["stewardnodes"], kwargs["bindings"])
    exposer: Exposer = memo.exposer
    await exposer.observe(str(event.get("type")), event["object"])


@kopf.on.event(*NODES, registry=REGISTRY)
async def node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    scheduler(memo).observe_node(event)
