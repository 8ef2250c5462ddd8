"""Keeps the Service and EndpointSlice of every ``expose: Cluster`` ManagedService.

The decision is ``steward.engine.exposure.desired``; this applies it with server-side
apply (field manager ``steward-controller``), and only when it changed since the last apply,
so a watch event that moves nothing costs no request. A Service of the same name that
Steward did not make is never touched: the resource gets one Warning Event instead.
Deleting the resource deletes both (their ownerReferences also let the garbage collector
do it when no controller was running).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kubernetes

from steward.api import reasons as R
from steward.engine import exposure as X
from steward.k8s.clients import Clients, api_message
from steward.k8s.events import EventRecorder, ObjectRef

log = logging.getLogger(__name__)

FIELD_MANAGER = "steward-controller"
TIMEOUT = (3.0, 10.0)
"""(connect, read) seconds of each request: a stuck apiserver never holds the handlers."""
APPLY = "application/apply-patch+yaml"


_UNKNOWN = X.Exposure({}, {})
"""Found at start-up, not applied by this process: the next event re-applies or deletes it."""


class Exposer:
    """One per process that owns endpoints (`steward controller`, or `steward run`)."""

    def __init__(self, clients: Clients, recorder: EventRecorder) -> None:
        self.core = clients.core
        self.discovery = kubernetes.client.DiscoveryV1Api(clients.core.api_client)
        self.recorder = recorder
        self.applied: dict[str, X.Exposure] = {}
        """key -> what is in the API as far as this process knows (absent: nothing)."""
        self.refused: set[str] = set()
        """Keys whose Service name is taken by someone else's Service (warned once)."""
        self.failed: dict[str, str] = {}
        """key -> the last failure told as an Event (the same one is not told again)."""
        self._lock = asyncio.Lock()

    async def start(self, namespaces: tuple[str, ...] = ()) -> None:
        """``prime`` off the event loop; a failure is logged, the next events still apply."""
        try:
            await asyncio.to_thread(self.prime, namespaces)
        except kubernetes.client.ApiException as exc:
            log.error("cannot list Steward's Services (%s): a resource that stopped exposing "
                      "while no controller ran keeps its Service", api_message(exc))  # fmt: skip

    def prime(self, namespaces: tuple[str, ...] = ()) -> None:
        """Learn which Services Steward made before this process started (one list per
        watched namespace, or one for all), so that a resource that stopped exposing while
        no controller ran still loses its Service, and others cost no request."""
        selector = X.OWNER_LABEL
        lists = (
            [
                self.core.list_namespaced_service(
                    ns, label_selector=selector, _request_timeout=TIMEOUT
                )
                for ns in namespaces
            ]
            if namespaces
            else [
                self.core.list_service_for_all_namespaces(
                    label_selector=selector, _request_timeout=TIMEOUT
                )
            ]
        )
        for found in lists:
            for svc in found.items:
                meta = svc.metadata
                owner = (meta.labels or {}).get(X.OWNER_LABEL) if meta is not None else None
                if meta is not None and owner:
                    self.applied.setdefault(f"{meta.namespace}/{owner}", _UNKNOWN)

    async def observe(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A watch event of a ManagedService: bring its Service and slice in line."""
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        want = X.NOTHING if event_type == "DELETED" else X.desired(body)
        if self.applied.get(key, X.NOTHING) == want:
            return
        async with self._lock:
            try:
                await asyncio.to_thread(self._converge, key, body, want)
            except kubernetes.client.ApiException as exc:
                # The resource's next event retries (a watch resync brings one at the latest);
                # the user hears of each new failure once, as an Event on the resource.
                message = f"its Service and EndpointSlice are not updated: {api_message(exc)}"
                log.warning("%s: %s", key, message)
                self.applied[key] = _UNKNOWN
                if self.failed.get(key) != message and event_type != "DELETED":
                    self.failed[key] = message
                    await asyncio.to_thread(self._warn, body, R.EXPOSE_FAILED, message)
            else:
                self.failed.pop(key, None)

    def _converge(self, key: str, body: Mapping[str, Any], want: X.Exposure) -> None:
        namespace, _, name = key.partition("/")
        if want.service is None or want.endpoint_slice is None:
            self._delete(namespace, name)
            self.refused.discard(key)
            self.applied.pop(key, None)
            return
        live = self._read_service(namespace, name)
        if live is not None and not X.ours(live, name):
            if key not in self.refused:
                self.refused.add(key)
                message = (
                    f"a Service named {name} exists and Steward did not create it: "
                    "the endpoint is not exposed (rename one of them)"
                )
                self._warn(body, R.SERVICE_NAME_TAKEN, message)
            return
        self.refused.discard(key)
        previous = self.applied.get(key, _UNKNOWN)
        if live is None or previous.service != want.service:
            self.core.patch_namespaced_service(
                name, namespace, want.service, field_manager=FIELD_MANAGER, force=True,
                _content_type=APPLY, _request_timeout=TIMEOUT,
            )  # fmt: skip
        if live is None or previous.endpoint_slice != want.endpoint_slice:
            self.discovery.patch_namespaced_endpoint_slice(
                name + X.SLICE_SUFFIX, namespace, want.endpoint_slice,
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
                _request_timeout=TIMEOUT,
            )  # fmt: skip
        self.applied[key] = want

    def _read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            live = self.core.read_namespaced_service(name, namespace, _request_timeout=TIMEOUT)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {"metadata": {"labels": dict((live.metadata.labels or {}) if live.metadata else {})}}

    def _delete(self, namespace: str, name: str) -> None:
        """The slice (Steward's by its name) and the Service, if it is Steward's."""
        calls = [(self.discovery.delete_namespaced_endpoint_slice, name + X.SLICE_SUFFIX)]
        if X.ours(self._read_service(namespace, name), name):
            calls.append((self.core.delete_namespaced_service, name))
        for delete, obj in calls:
            try:
                delete(obj, namespace, _request_timeout=TIMEOUT)
            except kubernetes.client.ApiException as exc:
                if exc.status != 404:
                    raise

    def _warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        meta = body["metadata"]
        ref = ObjectRef(
            api_version=str(body.get("apiVersion") or "steward.dev/v1alpha1"),
            kind=str(body.get("kind") or "ManagedService"),
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta["name"]),
            uid=str(meta.get("uid") or ""),
        )
        self.recorder.record(ref, "Warning", reason, message)
        self.recorder.flush(ref)
