"""`steward agent --node NAME`: registers its host as a StewardNode and keeps its Lease.

Two loops, as kubelet has them. The Lease (``<lease-namespace>/steward-<node>``) is
renewed every ``renew_interval`` through a client of its own with a short request
timeout, so a slow status write or a Docker ping never delays it; the StewardNode's
status is computed every ``status_interval`` and written only when it changed or every
``report_interval``. Liveness is the Lease alone: a failing Docker engine turns
``DockerReady`` False on a host that stays alive. The last successful renewal is kept
on the agent's own monotonic clock (what a fence acts on).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import NODE_KIND, NODE_PLURAL, StewardNodeStatus
from steward.engine.nodes import NodeSettings, node_status, report_due, stopped_status
from steward.k8s.clients import load_configuration
from steward.k8s.fence import write_renewed
from steward.runtimes.host import HostFacts, gather

log = logging.getLogger("steward.agent")

LEASE_NAMESPACE = "kube-node-lease"
"""Where kubelet keeps its node Leases; Steward's are named ``steward-<node>`` beside them."""


STATUS_TIMEOUT = (3.0, 10.0)
"""(connect, read) seconds for a StewardNode status write."""


def lease_name(node: str) -> str:
    return f"steward-{node}"


@dataclass(frozen=True)
class AgentOptions:
    settings: NodeSettings
    lease_namespace: str = LEASE_NAMESPACE
    labels: tuple[tuple[str, str], ...] = ()
    kubeconfig: str | None = None


def _configuration(kubeconfig: str | None) -> kubernetes.client.Configuration:
    """A configuration of our own (not the process-wide default): one client per loop."""
    cfg = kubernetes.client.Configuration()
    load_configuration(kubeconfig, into=cfg)
    return cfg


def _now() -> datetime:
    return datetime.now(UTC)


class Agent:
    """One host's registration; ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        options: AgentOptions,
        facts: Callable[[], HostFacts] = gather,
        services: Callable[[], int] = lambda: 0,
        fence_dir: Path | None = None,
    ) -> None:
        self.options = options
        self.services = services
        """How many ManagedServices this host holds now (``--serve``), for status.services."""
        self.settings = options.settings
        self.node = options.settings.name
        self.facts = facts
        cfg = _configuration(options.kubeconfig)
        self.objects = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))
        lease_cfg = _configuration(options.kubeconfig)
        self.leases = kubernetes.client.CoordinationV1Api(kubernetes.client.ApiClient(lease_cfg))
        self.lease_timeout = (2.0, max(1.0, self.settings.renew_interval))
        self._stop = threading.Event()
        self.started_at = _now()
        self.last_renewed: float | None = None
        """time.monotonic() of the last successful renewal."""
        self.fence_dir = fence_dir
        """``--serve``: where the start of each successful renewal is written for fencing."""
        self._failed = False
        self._resync = threading.Event()
        """Set when renewals come back after failing: the status is written again in full
        (the controller may have marked the host lost meanwhile)."""
        self.renewals = 0
        self._lease: Any = None
        self._node_uid = ""
        self._reported: StewardNodeStatus | None = None
        self._reported_at: float | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.start()
        try:
            self._stop.wait()
        finally:
            self.close()

    def start(self) -> None:
        """Register, then renew and report from background threads (``close()`` ends them):
        ``run()`` waits meanwhile, `steward agent --serve` runs its operator."""
        self.register()
        self._threads = [
            threading.Thread(target=self._renew_loop, name="steward-lease", daemon=True),
            threading.Thread(target=self._status_loop, name="steward-node-status", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop both loops and say goodbye (Ready=False, AgentStopped)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.lease_timeout[1] + 5)
        self._say_goodbye()

    # ------------------------------------------------------------------ the StewardNode
    def register(self) -> None:
        """Create the StewardNode (or take the existing one over), with the agent's labels."""
        labels = dict(self.options.labels)
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": NODE_KIND,
            "metadata": {"name": self.node, "labels": labels},
            "spec": {"unschedulable": False},  # the admin's from then on: never patched here
        }
        obj: Any
        try:
            obj = self.objects.create_cluster_custom_object(
                API_GROUP, API_VERSION, NODE_PLURAL, body
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            obj = self.objects.patch_cluster_custom_object(
                API_GROUP, API_VERSION, NODE_PLURAL, self.node, {"metadata": {"labels": labels}}
            )
        self._node_uid = obj["metadata"]["uid"]
        prior = obj.get("status")
        self._reported = StewardNodeStatus.model_validate(prior) if prior else None
        self._report(force=True)
        log.info("registered StewardNode %s", self.node)

    def _status_loop(self) -> None:
        while not self._stop.is_set():
            try:
                force = self._resync.is_set()
                self._resync.clear()
                self._report(force=force)
            except Exception:  # a failed write is retried at the next interval
                log.exception("status of StewardNode %s not written", self.node)
            self._stop.wait(self.settings.status_interval)

    def _report(self, force: bool = False) -> None:
        status = node_status(
            self.facts(),
            self.settings,
            self._reported,
            _now(),
            services=self.services(),
            started_at=self.started_at,
        )
        now = time.monotonic()
        if not force and not report_due(
            self._reported, status, self._reported_at, now, self.settings.report_interval
        ):
            return
        self._write_status(status)
        self._reported, self._reported_at = status, now

    def _write_status(self, status: StewardNodeStatus) -> None:
        # Bounded like the Lease calls: over a cut link an unbounded write would hold the
        # status loop (and the goodbye at SIGTERM) until the kernel gives up on the socket.
        self.objects.patch_cluster_custom_object_status(
            API_GROUP,
            API_VERSION,
            NODE_PLURAL,
            self.node,
            {"status": status.to_dict()},
            _request_timeout=STATUS_TIMEOUT,
        )

    def _say_goodbye(self) -> None:
        if self._reported is None:
            return
        try:
            self._write_status(stopped_status(self._reported, _now()))
        except Exception:
            log.exception("could not mark StewardNode %s stopped", self.node)

    # ------------------------------------------------------------------ the Lease
    def _renew_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew()
            except Exception as exc:  # the next attempt comes at the next interval
                log.warning("lease %s not renewed: %s", lease_name(self.node), exc)
            self._stop.wait(self.settings.renew_interval)

    def _lease_body(self) -> Any:
        c = kubernetes.client
        owner = c.V1OwnerReference(
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind=NODE_KIND,
            name=self.node,
            uid=self._node_uid,
        )
        return c.V1Lease(
            metadata=c.V1ObjectMeta(
                name=lease_name(self.node),
                namespace=self.options.lease_namespace,
                owner_references=[owner] if self._node_uid else None,
                labels={"app.kubernetes.io/managed-by": "steward", "steward.dev/node": self.node},
            ),
            spec=c.V1LeaseSpec(holder_identity=self.node),
        )

    def renew(self) -> None:
        """One renewal: update the cached Lease; on a conflict read it again and retry once."""
        started = time.monotonic()
        previous = self.last_renewed
        try:
            try:
                self._renew_once()
            except kubernetes.client.ApiException as exc:
                if exc.status not in (404, 409):
                    raise
                self._lease = None  # stale resourceVersion or gone
                self._renew_once()
        except Exception:
            self._failed = True
            raise
        if self.fence_dir is not None:
            write_renewed(self.fence_dir, started)
        # Measured at the end: a renewal the client retried until it went through (a cut
        # link healed) can leave the host silent for longer than the controller's grace.
        finished = time.monotonic()
        gap = previous is not None and finished - previous > 2 * self.settings.renew_interval
        if self._failed or gap:
            self._failed = False
            self._resync.set()

    def _renew_once(self) -> None:
        ns, name = self.options.lease_namespace, lease_name(self.node)
        now = _now()
        lease = self._lease
        if lease is None:
            try:
                lease = self.leases.read_namespaced_lease(
                    name, ns, _request_timeout=self.lease_timeout
                )
            except kubernetes.client.ApiException as exc:
                if exc.status != 404:
                    raise
                lease = self._lease_body()
                lease.spec.acquire_time = now
                lease.spec.lease_duration_seconds = int(self.settings.lease_duration)
                lease.spec.renew_time = now
                self._lease = self.leases.create_namespaced_lease(
                    ns, lease, _request_timeout=self.lease_timeout
                )
                self._renewed()
                return
        lease.spec.holder_identity = self.node
        lease.spec.lease_duration_seconds = int(self.settings.lease_duration)
        lease.spec.renew_time = now
        self._lease = self.leases.replace_namespaced_lease(
            name, ns, lease, _request_timeout=self.lease_timeout
        )
        self._renewed()

    def _renewed(self) -> None:
        self.last_renewed = time.monotonic()
        self.renewals += 1


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``KEY=VALUE`` flags as a dict; ValueError names the bad one."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def run_agent(options: AgentOptions) -> int:
    """The `steward agent` process: register, renew, report; SIGTERM says goodbye."""
    import signal

    agent = Agent(options)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return 0
