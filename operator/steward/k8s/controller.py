"""Translate between ManagedService objects and engine Services; nothing here decides.

The kopf handlers call into one ``Controller`` built at startup. Per resource,
a kopf daemon task drives ``Service.areconcile`` (probes awaited on the one
event loop; blocking runtime calls in a per-flavor thread pool), and the
status the engine computed is written through the status subresource only
when it changed.

Each flavor has two fair pools (``engine/fairness.py``), each shared by every
namespace but capped per namespace: the reconcile lane, and the stop lane for
stops and destroys (the finalizer, adminState inactive, a spec change that
replaces the workload), so a daemon that sits out its grace period or a long
``terraform destroy`` never holds a worker another namespace's reconcile needs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from steward.api import reasons as R
from steward.api.crd import PLURAL
from steward.api.errors import format_validation_error
from steward.api.manifest import API_GROUP, API_VERSION, ManagedService
from steward.api.spec import DeletionPolicy
from steward.api.state import ServiceState
from steward.api.status import ManagedServiceStatus
from steward.engine.driver import LoopSettings, ServiceLoop
from steward.engine.fairness import FairPool, Lane, lane_for
from steward.engine.service import Service
from steward.k8s import metrics
from steward.k8s.clients import Clients
from steward.k8s.config import OperatorConfig
from steward.k8s.credentials import ServiceAccountTokens
from steward.k8s.events import EventRecorder, ObjectRef
from steward.k8s.patches import merge_patch, significant
from steward.k8s.policies import PolicySource
from steward.k8s.resolver import ClusterResolver
from steward.k8s.terraform import SecretNotOwned, delete_state, sync_outputs_secret
from steward.runtimes.sandbox import Sandbox, UidAllocator

log = logging.getLogger("steward.k8s")

FORCE_DELETE_ANNOTATION = "steward.dev/force-delete"
PROGRESS_INTERVAL = 1.0
"""While a reconcile runs longer than this, status and events are published meanwhile."""
INVALID_SLEEP = 3600.0
"""An invalid spec waits for the next change of the resource (a watch event wakes it)."""


def operator_defaults(spec: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """Install-wide defaults (chart values) for what a spec leaves unset: Terraform's
    binary and state backend."""
    tf = spec.get("terraform")
    if isinstance(tf, dict):
        tf = dict(tf)
        binary = config.terraform_binary
        if binary and binary != "auto" and "binary" not in tf and "binaryPath" not in tf:
            tf["binary"] = binary
        backend = config.terraform_state_backend
        if backend and backend != "local" and "backend" not in tf:
            tf["backend"] = {backend: {}}
        spec = {**spec, "terraform": tf}
    return spec


@dataclass
class Options:
    """Tunables of the controller itself (the rest is OperatorConfig)."""

    resume_concurrency: int = 8
    resume_jitter_seconds: float = 2.0
    reference_check_seconds: float = 10.0


@dataclass
class Tracked:
    """One resource the operator drives."""

    service: Service | None
    events: collections.deque[tuple[str, str, str]] = field(default_factory=collections.deque)
    loop: ServiceLoop | None = None
    written: dict[str, Any] = field(default_factory=dict)
    """The status as last written to the API (for diffs)."""
    generation: int | None = None
    manifest: ManagedService | None = None
    """The spec as parsed for ``generation`` (parsed once per generation)."""
    probed_at: datetime | None = None
    outputs_digest: str = ""


class Controller:
    """Holds the Services of every watched resource."""

    def __init__(
        self, clients: Clients, config: OperatorConfig, options: Options | None = None
    ) -> None:
        self.clients = clients
        self.config = config
        self.options = options or Options()
        self.pools: dict[tuple[Lane, str], FairPool] = {
            (lane, flavor): FairPool(
                n, config.namespace_cap(flavor), name=f"steward-{flavor}-{lane.value}"
            )
            for flavor, n in config.workers.items()
            for lane in Lane
        }
        self.tracked: dict[str, Tracked] = {}
        self.recorder = EventRecorder(clients.core, config.instance)
        self.policies = PolicySource(clients, enforce=config.enforce_policy)
        self.uids = (
            UidAllocator(config.sandbox_uid_start, config.sandbox_uid_count, config.state_dir)
            if config.sandbox
            else None
        )
        self._resume: dict[str, asyncio.Semaphore] = {}
        """Per namespace: one namespace's creations queued behind its cap hold only its own."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def executor(self, flavor: str, namespace: str, lane: Lane = Lane.RECONCILE) -> Executor:
        """Where one namespace's blocking calls for ``flavor`` run, in ``lane``."""
        return self.pools[lane, flavor].for_namespace(namespace)

    def _manifest(self, body: kopf.Body) -> ManagedService:
        data = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {
                "name": body.meta["name"],
                "namespace": body.meta.get("namespace", "default"),
                "generation": body.meta.get("generation"),
                "uid": body.meta.get("uid"),
                "labels": dict(body.meta.get("labels") or {}),
                "annotations": {},
            },
            "spec": operator_defaults(dict(body.spec), self.config),
        }
        return ManagedService.model_validate(data)

    def _new_service(self, ms: ManagedService, tracked: Tracked) -> Service:
        def sink(type_: str, reason: str, message: str) -> None:
            tracked.events.append((type_, reason, message))

        resolver = ClusterResolver(self.clients, ms.metadata.namespace)
        policy = self.policies.for_namespace(ms.metadata.namespace) if self.policies else None
        sandbox = None
        credentials = None
        if self.uids is not None:
            uid = self.uids.allocate(ms.key)
            require = self.policies.requires_limits(ms.metadata.namespace)
            sandbox = Sandbox(
                uid=uid, gid=uid, state_root=self.config.state_dir, require_limits=require
            )
            credentials = ServiceAccountTokens(
                self.clients, ms.metadata.namespace, self.config.terraform_service_account
            )
        return Service(
            ms,
            self.config.state_dir,
            resolver=resolver,
            events=sink,
            policy=policy,
            sandbox=sandbox,
            credentials=credentials,
            host_ip=self.config.host_ip,
            **self._service_kwargs(ms),
        )

    def _service_kwargs(self, ms: ManagedService) -> dict[str, Any]:
        """More for the Service of ``ms`` (an agent's proof of fenced predecessors)."""
        return {}

    async def _patch_status(
        self, body: kopf.Body, tracked: Tracked, status: dict[str, Any]
    ) -> None:
        status = self._outgoing(body, status)
        if significant(status) == significant(tracked.written):
            return
        patch = self._presented(body, merge_patch(tracked.written, status))
        ns, name = str(body.meta.get("namespace")), str(body.meta["name"])

        def send() -> None:
            self.clients.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, ns, PLURAL, name, {"status": patch}
            )

        try:
            await asyncio.get_running_loop().run_in_executor(None, send)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        tracked.written = status
        metrics.STATUS_PATCHES.inc()

    async def _flush_events(self, body: kopf.Body, tracked: Tracked) -> None:
        """Post the engine's Events (aggregated and rate-limited by the recorder)."""
        pending = list(tracked.events)
        tracked.events.clear()
        await self._post(body, pending)

    async def _event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None:
        await self._post(body, [(type_, reason, message)])

    async def _post(self, body: kopf.Body, events: list[tuple[str, str, str]]) -> None:
        ref = _ref(body)
        if not events and not self.recorder.held_back(ref):
            return  # the steady state: no thread hop, no API call

        def send() -> None:
            for type_, reason, message in events:
                self.recorder.record(ref, type_, reason, message)
            self.recorder.flush(ref)

        await asyncio.get_running_loop().run_in_executor(None, send)

    # ------------------------------------------------------------ what an agent adds (k8s/serving.py)
    def serves(self, body: kopf.Body) -> bool:
        """Whether this process runs the resource: every one here, an agent's own there."""
        return True

    def _holds(self, key: str, body: kopf.Body) -> bool:
        """Whether the resource's loop may go on (an agent: while its binding lasts)."""
        return True

    def _outgoing(self, body: kopf.Body, status: dict[str, Any]) -> dict[str, Any]:
        """The status to write, from the engine's."""
        return status

    def _presented(self, body: kopf.Body, patch: dict[str, Any]) -> dict[str, Any]:
        """The status patch as sent (an agent presents its epoch with every write)."""
        return patch

    def _resuming(self, body: kopf.Body) -> bool:
        """Whether an earlier operator served this resource (its start is staggered by the
        resume jitter: no stampede after a restart). The CRD defaults status to
        {observedGeneration: 0}: only a status Steward wrote has a state."""
        return "state" in (body.get("status") or {})

    # ------------------------------------------------------------ handlers' entry points
    def wake(self, key: str, gone: kopf.Body | None = None) -> None:
        """A watch event of ``key``; ``gone``: the body of a DELETED one."""
        tracked = self.tracked.get(key)
        if tracked is not None and tracked.loop is not None:
            tracked.loop.wake()

    async def drive(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        """The per-resource loop (the engine's ServiceLoop), run as a kopf daemon."""
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        tracked = self.tracked.setdefault(key, Tracked(service=None))
        tracked.written = dict(body.get("status") or {})
        adapter = ResourceAdapter(self, body, tracked, resuming=self._resuming(body))
        loop = ServiceLoop(
            adapter.publish,
            service=tracked.service,
            refresh=adapter.refresh,
            settings=LoopSettings(
                progress_interval=PROGRESS_INTERVAL,
                reference_check_seconds=self.options.reference_check_seconds,
            ),
            hooks=[adapter.count, adapter.outputs],
            on_error=adapter.failed,
        )
        tracked.loop = loop
        await loop.run(
            lambda: (
                not stopped.is_set()
                and not body.meta.get("deletionTimestamp")
                and self._holds(key, body)
            )
        )

    async def _invalid(
        self, body: kopf.Body, tracked: Tracked, message: str, generation: int | None
    ) -> None:
        try:
            current = ManagedServiceStatus.model_validate(tracked.written)
        except ValidationError:
            current = ManagedServiceStatus()
        current.update_state(ServiceState.ERROR, message)
        current.observed_generation = generation
        short = message[: R.MESSAGE_MAX]
        current.set_condition("Ready", "False", R.INVALID_SPEC, short, generation)
        current.set_condition(R.RECONCILING, "False", "Idle", "", generation)
        current.set_condition(R.STALLED, "True", R.INVALID_SPEC, short, generation)
        status = {**tracked.written, **current.to_dict()}
        if significant(status) != significant(tracked.written):
            await self._event(body, "Warning", R.INVALID_SPEC, short)
        await self._patch_status(body, tracked, status)

    async def delete(self, body: kopf.Body, retry: int) -> None:
        """Finalizer: stop/destroy per deletionPolicy; a failure is retried with back-off."""
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        tracked = self.tracked.pop(key, None) or Tracked(service=None)
        try:
            ms = self._manifest(body)
        except ValidationError:
            return  # never started anything
        loop = asyncio.get_running_loop()
        executor = self.executor(ms.spec.flavor, ms.metadata.namespace, Lane.STOP)
        svc = tracked.service
        if svc is None:
            svc = await loop.run_in_executor(executor, self._new_service, ms, tracked)
        force = (body.meta.get("annotations") or {}).get(FORCE_DELETE_ANNOTATION) == "true"
        denied = await loop.run_in_executor(executor, self.policies.orphan_denied, ms)
        if denied:
            await self._event(body, "Warning", R.POLICY_DENIED, f"{denied}: stopping it instead")
        if ms.spec.deletion_policy is DeletionPolicy.ORPHAN and not denied:
            await self._event(body, "Normal", R.ORPHANED, "deletionPolicy Orphan: left running")
            self.recorder.forget(_ref(body))
            await loop.run_in_executor(executor, self._forget, svc, False)
            return
        ok = await loop.run_in_executor(executor, lambda: svc.stop(timeout=60))
        await self._flush_events(body, tracked)
        if not ok and svc.status.state is ServiceState.ERROR and not force:
            self.tracked[key] = tracked
            tracked.service = svc
            await self._patch_status(body, tracked, svc.status.to_dict())
            delay = min(5 * 2**retry, 300)
            raise kopf.TemporaryError(
                f"stop failed: {svc.status.last_error}; retrying (annotate "
                f"{FORCE_DELETE_ANNOTATION}=true to give up and remove the finalizer)",
                delay=delay,
            )
        if not ok:
            await self._event(body, "Warning", R.FORCE_DELETED, f"gave up: {svc.status.last_error}")
        else:  # state kept in Secrets (the Terraform kubernetes backend) goes with it
            await loop.run_in_executor(executor, delete_state, self.clients, svc)
        await loop.run_in_executor(executor, self._forget, svc, True)
        self.recorder.forget(_ref(body))

    def _forget(self, svc: Service, remove_runtime: bool) -> None:
        """Drop local state; with ``remove_runtime`` also the runtime files (nothing runs)."""
        svc.runtime.close()
        svc.ports.release(svc.identity.key)
        svc.store.forget(svc.identity, remove_runtime)
        if remove_runtime and self.uids is not None:
            self.uids.release(svc.identity.key)

    def states(self) -> list[tuple[str, str]]:
        """(flavor, state) of every tracked service, for the services gauge."""
        return [
            (t.service.flavor, t.service.status.state.value)
            for t in list(self.tracked.values())
            if t.service is not None
        ]

    def shutdown(self) -> None:
        """Operator exit: leave every workload running (the next operator adopts them)."""
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _ref(body: kopf.Body) -> ObjectRef:
    return ObjectRef(
        api_version=str(body.get("apiVersion") or f"{API_GROUP}/{API_VERSION}"),
        kind=str(body.get("kind") or "ManagedService"),
        namespace=str(body.meta.get("namespace") or "default"),
        name=str(body.meta["name"]),
        uid=str(body.meta.get("uid") or ""),
    )


class ResourceAdapter:
    """One resource's side of its ServiceLoop: the callbacks that translate between the
    object kopf hands us and the engine's Service (nothing here decides)."""

    def __init__(self, ctl: Controller, body: kopf.Body, tracked: Tracked, resuming: bool) -> None:
        self.ctl = ctl
        self.body = body
        self.tracked = tracked
        self.resuming = resuming
        """Started by an operator restart: the first build of the Service is staggered."""

    async def refresh(self, loop: ServiceLoop) -> float | None:
        """The wanted spec: parsed once per generation; builds or updates the Service."""
        ctl, tracked = self.ctl, self.tracked
        generation = self.body.meta.get("generation")
        ms = tracked.manifest if tracked.generation == generation else None
        if ms is None:
            try:
                ms = ctl._manifest(self.body)
            except ValidationError as exc:
                message = format_validation_error("spec", exc)
                await ctl._invalid(self.body, tracked, message, generation)
                return INVALID_SLEEP
        flavor, namespace = ms.spec.flavor, ms.metadata.namespace
        executor = ctl.executor(flavor, namespace)
        running = asyncio.get_running_loop()
        if loop.service is None:
            if self.resuming:  # after an operator restart: stagger, no stampede
                await asyncio.sleep(random.uniform(0, ctl.options.resume_jitter_seconds))
            resume = ctl._resume.setdefault(
                namespace, asyncio.Semaphore(ctl.options.resume_concurrency)
            )
            async with resume:
                svc = await running.run_in_executor(executor, ctl._new_service, ms, tracked)
            loop.service = tracked.service = svc
        elif generation != tracked.generation:  # may stop the old workload first
            stops = ctl.executor(flavor, namespace, Lane.STOP)
            await running.run_in_executor(stops, loop.service.update, ms)
        lane = lane_for(ms.spec.admin_state, loop.service.status.state)
        loop.executor = ctl.executor(flavor, namespace, lane)
        self.resuming = False
        tracked.generation, tracked.manifest = generation, ms
        return None

    async def publish(self, svc: Service, running_for: float | None) -> None:
        # Status first: what watchers wait for (a crash seen) is not held behind an Event.
        await self.ctl._patch_status(self.body, self.tracked, svc.status.to_dict())
        await self.ctl._flush_events(self.body, self.tracked)

    async def count(self, svc: Service) -> None:
        """Hook: the reconcile and probe-latency metrics."""
        metrics.RECONCILES.labels(svc.flavor).inc()
        health = svc.status.health
        probed_at, latency = health.last_probe_time, health.latency_seconds
        if probed_at != self.tracked.probed_at and latency is not None:
            metrics.PROBE_LATENCY.labels(svc.flavor).observe(latency)
        self.tracked.probed_at = probed_at

    async def outputs(self, svc: Service) -> None:
        """Hook: a runtime with outputs (Terraform) keeps its outputs Secret current."""
        if not svc.runtime.capabilities.has_outputs or svc.status.state is not ServiceState.ACTIVE:
            return
        tracked = self.tracked
        try:
            tracked.outputs_digest = await asyncio.get_running_loop().run_in_executor(
                self.ctl.executor(svc.flavor, svc.manifest.metadata.namespace),
                sync_outputs_secret,
                self.ctl.clients,
                self.body,
                svc,
                tracked.outputs_digest,
            )
        except kubernetes.client.ApiException as exc:
            tracked.events.append(
                ("Warning", R.OUTPUTS_SECRET_FAILED, f"{exc.status}: {exc.reason}")
            )
        except SecretNotOwned as exc:
            tracked.events.append(("Warning", R.OUTPUTS_SECRET_NOT_OWNED, str(exc)))

    def failed(self, svc: Service, exc: Exception) -> None:
        metrics.RECONCILE_ERRORS.labels(svc.flavor).inc()
        self.tracked.events.append(("Warning", R.RECONCILE_FAILED, f"{type(exc).__name__}: {exc}"))
