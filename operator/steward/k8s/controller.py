"""Translate between ManagedService objects and engine Services; nothing here decides.

The kopf handlers call into one ``Controller`` built at startup. Per resource,
a kopf daemon task drives ``Service.areconcile`` (probes awaited on the one
event loop; blocking runtime calls in a per-flavor thread pool), and the
status the engine computed is written through the status subresource only
when it changed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import shutil
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
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
from steward.engine.service import Service
from steward.k8s import metrics
from steward.k8s.clients import Clients
from steward.k8s.events import EventRecorder, ObjectRef
from steward.k8s.patches import merge_patch, significant
from steward.k8s.resolver import ClusterResolver
from steward.k8s.terraform import delete_state, sync_outputs_secret

log = logging.getLogger("steward.k8s")

FORCE_DELETE_ANNOTATION = "steward.dev/force-delete"
PROGRESS_INTERVAL = 1.0
"""While a reconcile runs longer than this, status and events are published meanwhile."""


def operator_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """Install-wide defaults (chart values) for what a spec leaves unset: Terraform's
    binary (STEWARD_TERRAFORM_BINARY) and state backend (STEWARD_TERRAFORM_STATE_BACKEND)."""
    tf = spec.get("terraform")
    if isinstance(tf, dict):
        tf = dict(tf)
        binary = os.environ.get("STEWARD_TERRAFORM_BINARY", "")
        if binary and binary != "auto" and "binary" not in tf and "binaryPath" not in tf:
            tf["binary"] = binary
        backend = os.environ.get("STEWARD_TERRAFORM_STATE_BACKEND", "")
        if backend and backend != "local" and "backend" not in tf:
            tf["backend"] = {backend: {}}
        spec = {**spec, "terraform": tf}
    return spec


@dataclass
class Options:
    state_dir: Path
    workers: dict[str, int] = field(
        default_factory=lambda: {"daemon": 8, "container": 8, "terraform": 2}
    )
    resume_concurrency: int = 8
    resume_jitter_seconds: float = 2.0
    reference_check_seconds: float = 10.0


@dataclass
class Tracked:
    """One resource the operator drives."""

    service: Service | None
    events: collections.deque[tuple[str, str, str]] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    written: dict[str, Any] = field(default_factory=dict)
    """The status as last written to the API (for diffs)."""
    generation: int | None = None
    checked_refs: float = 0.0
    outputs_digest: str = ""


class Controller:
    """Holds the Services of every watched resource."""

    def __init__(self, clients: Clients, options: Options) -> None:
        self.clients = clients
        self.options = options
        self.executors: dict[str, Executor] = {
            flavor: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"steward-{flavor}")
            for flavor, n in options.workers.items()
        }
        self.tracked: dict[str, Tracked] = {}
        self.recorder = EventRecorder(clients.core)
        self._resume = asyncio.Semaphore(options.resume_concurrency)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def executor(self, flavor: str) -> Executor:
        return self.executors[flavor]

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
            "spec": operator_defaults(dict(body.spec)),
        }
        return ManagedService.model_validate(data)

    def _new_service(self, ms: ManagedService, tracked: Tracked) -> Service:
        def sink(type_: str, reason: str, message: str) -> None:
            tracked.events.append((type_, reason, message))

        resolver = ClusterResolver(self.clients, ms.metadata.namespace)
        return Service(ms, self.options.state_dir, resolver=resolver, events=sink)

    async def _patch_status(
        self, body: kopf.Body, tracked: Tracked, status: dict[str, Any]
    ) -> None:
        if significant(status) == significant(tracked.written):
            return
        patch = merge_patch(tracked.written, status)
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
        ref = _ref(body)
        pending = list(tracked.events)
        tracked.events.clear()

        def send() -> None:
            for type_, reason, message in pending:
                self.recorder.record(ref, type_, reason, message)
            self.recorder.flush(ref)

        await asyncio.get_running_loop().run_in_executor(None, send)

    async def _event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None:
        tracked = Tracked(service=None)
        tracked.events.append((type_, reason, message))
        await self._flush_events(body, tracked)

    # ------------------------------------------------------------ handlers' entry points
    def wake(self, key: str) -> None:
        tracked = self.tracked.get(key)
        if tracked is not None:
            tracked.wake.set()

    async def drive(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        """The per-resource loop, run as a kopf daemon until the resource or operator goes."""
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        tracked = self.tracked.setdefault(key, Tracked(service=None))
        tracked.written = dict(body.get("status") or {})
        first = True
        while not stopped.is_set() and not body.meta.get("deletionTimestamp"):
            generation = body.meta.get("generation")
            try:
                ms = self._manifest(body)
            except ValidationError as exc:
                await self._invalid(body, tracked, format_validation_error("spec", exc), generation)
                await self._sleep(tracked, 3600)
                continue
            loop = asyncio.get_running_loop()
            executor = self.executor(ms.spec.flavor)
            svc = tracked.service
            if svc is None:
                if first and body.get("status"):  # resume after a restart: stagger, no stampede
                    await asyncio.sleep(random.uniform(0, self.options.resume_jitter_seconds))
                async with self._resume:
                    svc = await loop.run_in_executor(executor, self._new_service, ms, tracked)
                tracked.service = svc
                tracked.generation = generation
            elif generation != tracked.generation:
                tracked.generation = generation
                await loop.run_in_executor(executor, svc.update, ms)
            first = False
            now = loop.time()
            if (
                svc.has_references
                and now - tracked.checked_refs >= self.options.reference_check_seconds
            ):
                tracked.checked_refs = now
                if await loop.run_in_executor(executor, svc.references_changed):
                    await loop.run_in_executor(
                        executor, svc.replace, "a referenced Secret or ConfigMap changed"
                    )
            probed_at = svc.status.health.last_probe_time
            try:
                metrics.RECONCILES.labels(svc.flavor).inc()
                delay = await self._reconcile_reporting(body, tracked, svc)
                latency = svc.status.health.latency_seconds
                if svc.status.health.last_probe_time != probed_at and latency is not None:
                    metrics.PROBE_LATENCY.labels(svc.flavor).observe(latency)
            except Exception as exc:  # never let one resource kill its loop
                metrics.RECONCILE_ERRORS.labels(svc.flavor).inc()
                log.exception("reconcile of %s failed", key)
                tracked.events.append(
                    ("Warning", R.RECONCILE_FAILED, f"{type(exc).__name__}: {exc}")
                )
                delay = 5.0
            if svc.flavor == "terraform" and svc.status.state is ServiceState.ACTIVE:
                try:
                    tracked.outputs_digest = await loop.run_in_executor(
                        executor,
                        sync_outputs_secret,
                        self.clients,
                        body,
                        svc,
                        tracked.outputs_digest,
                    )
                except kubernetes.client.ApiException as exc:
                    tracked.events.append(
                        ("Warning", R.OUTPUTS_SECRET_FAILED, f"{exc.status}: {exc.reason}")
                    )
            await self._flush_events(body, tracked)
            await self._patch_status(body, tracked, svc.status.to_dict())
            await self._sleep(tracked, delay)

    async def _reconcile_reporting(self, body: kopf.Body, tracked: Tracked, svc: Service) -> float:
        """One reconcile; while it runs long (a Terraform apply), status and events keep flowing."""
        task = asyncio.ensure_future(svc.areconcile(self.executor(svc.flavor)))
        while True:
            done, _ = await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
            if done:
                return task.result()
            await self._flush_events(body, tracked)
            await self._patch_status(body, tracked, svc.status.to_dict())

    async def _sleep(self, tracked: Tracked, delay: float) -> None:
        tracked.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracked.wake.wait(), timeout=max(delay, 0.02))

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
        executor = self.executor(ms.spec.flavor)
        svc = tracked.service
        if svc is None:
            svc = await loop.run_in_executor(executor, self._new_service, ms, tracked)
        force = (body.meta.get("annotations") or {}).get(FORCE_DELETE_ANNOTATION) == "true"
        if ms.spec.deletion_policy is DeletionPolicy.ORPHAN:
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
        elif svc.flavor == "terraform":
            await loop.run_in_executor(executor, delete_state, self.clients, svc)
        await loop.run_in_executor(executor, self._forget, svc, True)
        self.recorder.forget(_ref(body))

    def _forget(self, svc: Service, remove_runtime: bool) -> None:
        """Drop local state; with ``remove_runtime`` also the runtime files (nothing runs)."""
        svc.runtime.close()
        svc.ports.release(svc.identity.key)
        for name in ("status.json", "engine.json", "manifest.json"):
            (svc.service_dir / name).unlink(missing_ok=True)
        if remove_runtime:
            shutil.rmtree(svc.service_dir, ignore_errors=True)

    def states(self) -> list[tuple[str, str]]:
        """(flavor, state) of every tracked service, for the services gauge."""
        return [
            (t.service.flavor, t.service.status.state.value)
            for t in list(self.tracked.values())
            if t.service is not None
        ]

    def shutdown(self) -> None:
        """Operator exit: leave every workload running (the next operator adopts them)."""
        for ex in self.executors.values():
            ex.shutdown(wait=False, cancel_futures=True)


def _ref(body: kopf.Body) -> ObjectRef:
    return ObjectRef(
        api_version=str(body.get("apiVersion") or f"{API_GROUP}/{API_VERSION}"),
        kind=str(body.get("kind") or "ManagedService"),
        namespace=str(body.meta.get("namespace") or "default"),
        name=str(body.meta["name"]),
        uid=str(body.meta.get("uid") or ""),
    )
