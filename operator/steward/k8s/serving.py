"""An agent's operator (`steward agent --node NAME --serve`): today's reconcile, for what is
bound to NAME only. The decisions are :mod:`steward.engine.binding`'s; this translates.

* The API server sends the agent only ManagedServices with ``status.placement.nodeName=NAME``
  (a CRD selectable field and kopf's field selector, ``settings.py``); the reconcile daemon is
  filtered on the live body too (``handlers.serves``).
* Before it runs anything for a binding, the agent *claims* it: a status write presenting the
  binding's epoch (``status.placement.reportedEpoch``). Every later status write presents it
  again; the API server refuses (422) a write whose epoch is not the binding's any more.
* A refused write, or a binding that moved (the watch's DELETED as the object leaves the
  selector, or a new epoch), stops the agent's copy here, by :func:`release_action` (a
  Terraform apply is interrupted, never destroyed on this path), forgets it, and *releases*
  the epoch (``status.placement.releasedEpoch``): the controller binds the service elsewhere
  only then.
* Which epoch it holds for which service is kept under ``<state-dir>/agent/``, so an agent that
  was down stops (and releases) at start what moved away meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from steward.api import reasons as R
from steward.api.crd import NODE_NAME_FIELD, PLURAL
from steward.api.manifest import API_GROUP, API_VERSION, ManagedService
from steward.api.node import NODE_PLURAL
from steward.api.placement import Failover, FailoverPolicy, Placement
from steward.api.status import STALE_EPOCH_MESSAGE, Binding, raw_condition
from steward.engine.binding import ReleaseAction, holds, merged_conditions, release_action
from steward.engine.fairness import Lane
from steward.engine.hosts import fence_due
from steward.engine.service import Service
from steward.engine.store import ServiceStore
from steward.k8s.clients import Clients
from steward.k8s.config import OperatorConfig
from steward.k8s.controller import Controller, Tracked, _ref
from steward.k8s.fence import read_renewed, write_targets
from steward.k8s.fence import target as fence_target
from steward.k8s.logserver import LogServer, Reviews
from steward.k8s.patches import merge_patch
from steward.runtimes.base import FencedHolders, ServiceIdentity
from steward.runtimes.sandbox.fs import write_private

log = logging.getLogger("steward.agent")

FENCE_POLL = 0.25
RETRY_DELAY = 2.0
"""After a release, kopf runs the daemon again this much later (a binding of this host with a
newer epoch then starts afresh; one of another host ends it)."""


class Fenced(Exception):
    """The API server refused a status write: the epoch this host presented is over."""


def is_fenced(exc: kubernetes.client.ApiException) -> bool:
    return exc.status == 422 and STALE_EPOCH_MESSAGE in str(exc.body or "")


def binding_of(body: Any) -> Binding | None:
    """``status.placement`` of a body (None when absent or unreadable)."""
    raw = ((body.get("status") or {}) if body is not None else {}).get("placement")
    if not raw:
        return None
    try:
        return Binding.model_validate(dict(raw))
    except ValidationError:
        return None


def placement_of(spec: Any) -> Placement | None:
    """``spec.placement`` of a raw spec (None when absent or invalid: the agent reports it)."""
    raw = (spec or {}).get("placement")
    if not raw:
        return None
    try:
        return Placement.model_validate(dict(raw))
    except ValidationError:
        return None


class HeldEpochs:
    """Which binding epoch this host took for which service: ``<state-dir>/agent/NS/NAME``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "agent"

    def _path(self, key: str) -> Path:
        namespace, _, name = key.partition("/")
        return self.root / namespace / name

    def put(self, key: str, epoch: int) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, str(epoch))

    def get(self, key: str) -> int | None:
        try:
            return int(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def all(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.root.is_dir():
            return out
        for path in self.root.glob("*/*"):
            if path.name.startswith("."):
                continue
            try:
                out[f"{path.parent.name}/{path.name}"] = int(path.read_text())
            except (OSError, ValueError):
                continue
        return out


class AgentController(Controller):
    """The Controller of one host: runs only what is bound to ``config.node``, fenced by epoch."""

    def __init__(self, clients: Clients, config: OperatorConfig, **kw: Any) -> None:
        super().__init__(clients, config, **kw)
        assert config.node, "an agent serves one StewardNode"
        self.node: str = config.node
        self.held: dict[str, int] = {}
        self.records = HeldEpochs(config.state_dir)
        self.left: dict[str, str] = {}
        """key -> the resourceVersion of the DELETED event that took it off this host's watch."""
        self._releases: dict[str, asyncio.Task[None]] = {}
        self.fence_dir = self.records.root
        self.fenced: set[str] = set()
        """AfterFencing services this host stopped (or must stop) for want of a renewal."""
        self._targets: dict[str, dict[str, Any]] | None = None
        self._fencing: asyncio.Task[None] | None = None
        self._relost: dict[str, str] = {}
        """key -> the resourceVersion of the controller's NodeLost write answered in full."""
        self.resumed: set[str] = set()
        """Services whose binding epoch this host held before this process (a restart)."""
        self.predecessors: dict[str, FencedHolders] = {}
        """key -> the fenced hosts it ran on before this binding (``fencedNodes``), by their
        host names, and when this binding began: what lets Terraform break their lock."""

    # ------------------------------------------------------------ the hooks of Controller
    def _service_kwargs(self, ms: ManagedService) -> dict[str, Any]:
        return {"fenced": self.predecessors.get(ms.key)}

    def _hostnames(self, nodes: list[str]) -> frozenset[str]:
        """The host names the fenced StewardNodes' agents reported (a lock's ``Who``)."""
        out = set()
        for name in nodes:
            try:
                obj: Any = self.clients.custom.get_cluster_custom_object(
                    API_GROUP, API_VERSION, NODE_PLURAL, name
                )
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    continue  # gone: nothing proves who it was
                raise
            hostname = ((obj.get("status") or {}).get("agent") or {}).get("hostname")
            if hostname:
                out.add(str(hostname))
        return frozenset(out)

    def serves(self, body: kopf.Body) -> bool:
        return holds(binding_of(body), self.node, None)

    def _holds(self, key: str, body: kopf.Body) -> bool:
        return (
            key not in self.fenced
            and not self._left(key, body)
            and holds(binding_of(body), self.node, self.held.get(key))
        )

    # ------------------------------------------------------------ fencing (AfterFencing)
    def _failover(self, key: str, body: kopf.Body | None = None) -> Failover:
        tracked = self.tracked.get(key)
        ms = tracked.manifest if tracked is not None else None
        placement = ms.spec.placement if ms is not None else None
        if placement is None and body is not None:
            with contextlib.suppress(ValidationError):
                placement = self._manifest(body).spec.placement
        return placement.failover if placement is not None else Failover()

    def _since_renewal(self) -> float:
        renewed = read_renewed(self.fence_dir)
        return 0.0 if renewed is None else time.monotonic() - renewed

    async def _fence_loop(self) -> None:
        """Stop what is due, and keep the fence helper's list of targets current."""
        while True:
            with contextlib.suppress(Exception):
                self._fence_round()
            await asyncio.sleep(FENCE_POLL)

    def _fence_round(self) -> None:
        since = self._since_renewal()
        targets: dict[str, dict[str, Any]] = {}
        for key in list(self.held):
            failover = self._failover(key)
            if failover.policy is not FailoverPolicy.AFTER_FENCING:
                continue
            tracked = self.tracked.get(key)
            svc = tracked.service if tracked is not None else None
            runtime = svc.status.runtime if svc is not None else {}
            prior = (self._targets or {}).get(key)
            if (
                prior is not None
                and prior.get("pid") == runtime.get("pid")
                and prior.get("container") == (runtime.get("containerId") or None)
            ):
                targets[key] = {**prior, "fenceAfter": failover.fence_after_seconds}
            else:  # a new process: its start time is read once
                targets[key] = fence_target(failover.fence_after_seconds, runtime)
            if fence_due(failover, since) and key not in self.fenced:
                log.warning(
                    "%s: no Lease renewal for %.1f s (fenceAfterSeconds %d): stopping it here",
                    key,
                    since,
                    failover.fence_after_seconds,
                )
                self.fenced.add(key)
                self.wake(key)
        if targets != self._targets:
            write_targets(self.fence_dir, targets)
            self._targets = targets

    def _left(self, key: str, body: kopf.Body) -> bool:
        """Whether this body is the one a DELETED event ended (kopf forgets it then, and a
        service bound here again arrives as a new body with a newer resourceVersion)."""
        gone = self.left.get(key)
        return gone is not None and gone == str(body.meta.get("resourceVersion"))

    def wake(self, key: str, gone: kopf.Body | None = None) -> None:
        # A service that leaves the field selector arrives as DELETED carrying its last state
        # that matched (still bound here): the event type is what says the binding moved.
        if gone is not None:
            self.left[key] = str(gone.meta.get("resourceVersion"))
            held = self.records.get(key)
            if held is not None and key not in self.tracked and key not in self._releases:
                # A copy this host stopped (a fence) without releasing it, as it was still
                # bound here: it moved, so the epoch is released now (no daemon runs it).
                self._start_release(key, None, held)
        super().wake(key)

    def _epoch(self, body: kopf.Body) -> int | None:
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        held = self.held.get(key)
        if held is not None:
            return held
        binding = binding_of(body)
        return binding.epoch if binding is not None else None

    def _outgoing(self, body: kopf.Body, status: dict[str, Any]) -> dict[str, Any]:
        live = dict(body.get("status") or {})
        out = dict(status)
        placement = dict(live.get("placement") or {})
        epoch = self._epoch(body)
        if epoch is not None:
            placement["reportedEpoch"] = epoch
        if placement:
            out["placement"] = placement
        out["conditions"] = merged_conditions(
            status.get("conditions") or [], live.get("conditions") or []
        )
        return out

    def _resuming(self, body: kopf.Body) -> bool:
        """Only what this host ran before under this very epoch is a resume: a service that
        was just bound here (a failover, a drain) starts at once, not staggered like the
        restart of a host with hundreds of services."""
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        return key in self.resumed and super()._resuming(body)

    def _presented(self, body: kopf.Body, patch: dict[str, Any]) -> dict[str, Any]:
        epoch = self._epoch(body)
        out = {k: v for k, v in patch.items() if k != "placement"}
        if epoch is not None:  # the controller's fields are never written here
            out["placement"] = {"reportedEpoch": epoch}
        return out

    async def _patch_status(
        self, body: kopf.Body, tracked: Tracked, status: dict[str, Any]
    ) -> None:
        live = dict(body.get("status") or {})
        if _node_lost(live) and not _node_lost(tracked.written):
            # The controller wrote NodeLost while this host could not renew: it is back, so
            # write its own status in full (diffed against what is there, not its last write).
            key = f"{body.meta.get('namespace')}/{body.meta['name']}"
            version = str(body.meta.get("resourceVersion"))
            if self._relost.get(key) != version:  # once per such write, not per step
                self._relost[key] = version
                tracked.written = live
        try:
            await super()._patch_status(body, tracked, status)
        except kubernetes.client.ApiException as exc:
            if is_fenced(exc):
                raise Fenced(str(exc.reason)) from exc
            raise

    # ------------------------------------------------------------ the daemon
    async def drive(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        releasing = self._releases.get(key)
        if releasing is not None:  # the copy of an earlier binding is still being stopped
            await asyncio.shield(releasing)
        if self._fencing is None:
            self._fencing = asyncio.ensure_future(self._fence_loop())
        while fence_due(self._failover(key, body), self._since_renewal()):
            # Fenced: start nothing before the Lease is renewed. An expected wait, not an
            # error for kopf to log and retry; kopf stops it if the service moves away.
            if stopped.is_set():
                return
            await stopped.wait(RETRY_DELAY)
        if self._left(key, body):
            return  # a retry of a daemon whose service left this host meanwhile
        self.left.pop(key, None)
        binding = binding_of(body)
        if not holds(binding, self.node, None) or body.meta.get("deletionTimestamp"):
            return  # the filter let it through before the body moved on
        assert binding is not None
        epoch = binding.epoch
        if not await self._claim(body, epoch):
            await self._release_shielded(key, body, epoch)
            raise kopf.TemporaryError(f"epoch {epoch} is over", delay=RETRY_DELAY)
        if self.records.get(key) == epoch:
            self.resumed.add(key)
        else:
            self.resumed.discard(key)
        self.predecessors.pop(key, None)
        if binding.fenced_nodes and binding.bound_at is not None:
            hosts = await asyncio.to_thread(self._hostnames, binding.fenced_nodes)
            if hosts:
                self.predecessors[key] = FencedHolders(hosts, binding.bound_at)
        self.held[key] = epoch
        self.records.put(key, epoch)
        self.fenced.discard(key)
        fenced = False
        try:
            await super().drive(body, stopped)
        except Fenced:
            fenced = True
        reason = stopped.reason
        exiting = reason is not None and bool(
            reason
            & (
                kopf.DaemonStoppingReason.OPERATOR_EXITING
                | kopf.DaemonStoppingReason.OPERATOR_PAUSING
            )
        )
        if body.meta.get("deletionTimestamp") or exiting:
            return  # the finalizer stops it; an exiting agent leaves it running (adopted)
        gone = self._left(key, body)
        if key in self.fenced:
            await self._release_shielded(key, body, epoch)
            raise kopf.TemporaryError("fenced: the Lease is not renewed", delay=RETRY_DELAY)
        if gone or fenced or not self._holds(key, body):
            await self._release_shielded(key, body, epoch)
            if not gone and not stopped.is_set():  # kopf still has it: look again shortly
                raise kopf.TemporaryError(f"epoch {epoch} is over", delay=RETRY_DELAY)

    async def delete(self, body: kopf.Body, retry: int) -> None:
        key = f"{body.meta.get('namespace')}/{body.meta['name']}"
        await super().delete(body, retry)
        self.held.pop(key, None)
        self.records.drop(key)

    # ------------------------------------------------------------ claim and release
    async def _claim(self, body: kopf.Body, epoch: int) -> bool:
        """Present the epoch once before anything runs: False if the binding is over."""
        ns, name = str(body.meta.get("namespace")), str(body.meta["name"])
        patch = {"status": {"placement": {"reportedEpoch": epoch}}}

        def send() -> bool:
            try:
                self.clients.custom.patch_namespaced_custom_object_status(
                    API_GROUP, API_VERSION, ns, PLURAL, name, patch
                )
            except kubernetes.client.ApiException as exc:
                if exc.status == 404 or is_fenced(exc):
                    return False
                raise
            return True

        return await asyncio.get_running_loop().run_in_executor(None, send)

    async def _release_shielded(self, key: str, body: kopf.Body | None, epoch: int) -> None:
        """:meth:`_release` as a task of its own: a cancelled daemon does not cut it short."""
        await asyncio.shield(self._start_release(key, body, epoch))

    def _start_release(self, key: str, body: kopf.Body | None, epoch: int) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._release(key, body, epoch))
        self._releases[key] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._releases.get(key) is task:
                del self._releases[key]

        task.add_done_callback(done)
        return task

    async def _release(self, key: str, body: kopf.Body | None, epoch: int) -> None:
        """Stop this host's copy (never destroying), forget it, and release the epoch."""
        namespace, _, name = key.partition("/")
        tracked = self.tracked.pop(key, None) or Tracked(service=None)
        self.held.pop(key, None)
        self._relost.pop(key, None)
        ms = self._release_manifest(key, body)
        loop = asyncio.get_running_loop()
        final: dict[str, Any] | None = None
        if ms is not None:
            executor = self.executor(ms.spec.flavor, namespace, Lane.STOP)
            svc = tracked.service
            if svc is None:  # an earlier agent's copy: the Service adopts it first
                svc = await loop.run_in_executor(executor, self._new_service, ms, tracked)
            action = release_action(bool(getattr(svc.flavor_spec, "destroy_on_stop", False)))
            await loop.run_in_executor(executor, self._stop_here, svc, action)
            if action is ReleaseAction.STOP:
                final = svc.status.to_dict()
            await loop.run_in_executor(executor, self._forget, svc, False)
            log.info("%s: epoch %d is over on %s: %s", key, epoch, self.node, action.value)
        released = await loop.run_in_executor(None, self._ack, namespace, name, epoch, final)
        if not released:
            return  # still bound here (a fence without a failover): this host re-claims it
        self.records.drop(key)
        if body is not None:
            message = f"stopped on {self.node}: its binding there (epoch {epoch}) is over"
            await self._event(body, "Normal", R.RELEASED, message)
            self.recorder.forget(_ref(body))

    def _release_manifest(self, key: str, body: kopf.Body | None) -> ManagedService | None:
        if body is not None:
            with contextlib.suppress(ValidationError):
                return self._manifest(body)
        namespace, _, name = key.partition("/")
        stored = ServiceStore(self.config.state_dir).load_manifest(ServiceIdentity(namespace, name))
        if stored is None:
            return None
        try:
            return ManagedService.model_validate(stored)
        except ValidationError:
            return None

    @staticmethod
    def _stop_here(svc: Service, action: ReleaseAction) -> None:
        if action is ReleaseAction.STOP:
            svc.stop(timeout=60)
        else:
            svc.runtime.interrupt()

    def _ack(self, namespace: str, name: str, epoch: int, final: dict[str, Any] | None) -> bool:
        """Write ``releasedEpoch``; while the service is bound nowhere, with this host's last
        status too (stopped), on the object as read (a resourceVersion precondition).

        Not while the binding read still names this host at ``epoch`` (False): a copy stopped
        by a fence, with no failover (yet), is not released, or the controller would bind
        the next move elsewhere at once while this host, renewing again, re-claims and runs
        it (the CRD refuses that write too). True: released, or nothing left to release.
        """
        custom = self.clients.custom
        for attempt in range(3):
            try:
                obj: Any = custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, PLURAL, name
                )
                live = dict(obj.get("status") or {})
                binding = binding_of(obj)
                if holds(binding, self.node, epoch):
                    return False
                status: dict[str, Any] = {}
                body: dict[str, Any] = {"status": status}
                if final is not None and (binding is None or binding.node_name is None):
                    last = {
                        **final,
                        "placement": live.get("placement"),
                        "conditions": merged_conditions(
                            final.get("conditions") or [], live.get("conditions") or []
                        ),
                    }
                    status.update(merge_patch(live, last))
                    body["metadata"] = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                status["placement"] = {"releasedEpoch": epoch}
                custom.patch_namespaced_custom_object_status(
                    API_GROUP, API_VERSION, namespace, PLURAL, name, body
                )
                return True
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    return True  # gone: nothing to release
                if exc.status == 409 or (exc.status == 422 and final is not None):
                    final = None if attempt >= 1 or exc.status == 422 else final
                    continue  # written meanwhile (or the last status refused): the ack alone
                if exc.status != 422 or "releasedEpoch" not in str(exc.body or ""):
                    log.warning(
                        "%s/%s: release of epoch %d not written: %s %s",
                        namespace,
                        name,
                        epoch,
                        exc.status,
                        exc.body,
                    )
                return True  # a 422 on releasedEpoch: released past it already
        log.warning("%s/%s: release of epoch %d not written (conflicts)", namespace, name, epoch)
        return True

    # ------------------------------------------------------------ start
    async def sweep(self) -> None:
        """Stop (and release) what this host held when it stopped but is no longer bound here."""
        records = self.records.all()
        if not records:
            return
        loop = asyncio.get_running_loop()
        bound = await loop.run_in_executor(None, self._bound_here)
        for key, epoch in sorted(records.items()):
            if holds(bound.get(key), self.node, epoch):
                continue
            log.info("%s: bound elsewhere since this agent last ran; stopping it here", key)
            await self._release(key, None, epoch)

    def _bound_here(self) -> dict[str, Binding | None]:
        selector = f"{NODE_NAME_FIELD}={self.node}"
        items: list[Any] = []
        custom = self.clients.custom
        if self.config.namespaces:
            for ns in self.config.namespaces:
                found: Any = custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, ns, PLURAL, field_selector=selector
                )
                items += found.get("items", [])
        else:
            found = custom.list_cluster_custom_object(
                API_GROUP, API_VERSION, PLURAL, field_selector=selector
            )
            items += found.get("items", [])
        return {
            f"{o['metadata'].get('namespace')}/{o['metadata']['name']}": binding_of(o)
            for o in items
        }


def controller_for(clients: Clients, config: OperatorConfig) -> Controller:
    """`steward run`'s Controller, or an agent's when the config names a node."""
    return AgentController(clients, config) if config.node else Controller(clients, config)


async def resume(ctl: Controller) -> None:
    """At start: an agent stops what moved away while it was down."""
    if isinstance(ctl, AgentController):
        await ctl.sweep()


def _node_lost(status: dict[str, Any]) -> bool:
    return raw_condition(status, R.READY).get("reason") == R.NODE_LOST


def serve_logs(ctl: Controller, config: OperatorConfig) -> LogServer:
    """The agent's log endpoint over the Services it drives now (nothing else is found)."""
    assert config.log_cert_file is not None and config.log_key_file is not None

    def source(
        namespace: str, name: str, tail: int | None, follow: bool, previous: bool
    ) -> Iterator[str] | None:
        tracked = ctl.tracked.get(f"{namespace}/{name}")
        if tracked is None or tracked.service is None:
            return None
        return tracked.service.get_logs(tail=tail, follow=follow, previous=previous)

    return LogServer(
        config.log_address,
        config.log_port,
        config.log_cert_file,
        config.log_key_file,
        Reviews(ctl.clients.core.api_client),
        source,
        client_ca_file=config.client_ca_file,
    ).start()
