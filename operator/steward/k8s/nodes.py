"""`steward nodes`: the registered hosts, with what their Leases say right now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kubernetes

from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import DOCKER_READY, NODE_PLURAL, NODE_READY, TERRAFORM_READY
from steward.api.status import raw_condition
from steward.engine.nodes import lease_expired
from steward.k8s.agent import LEASE_NAMESPACE, lease_name
from steward.k8s.clients import build_clients

COLUMNS = ("NAME", "READY", "LEASE", "SERVICES", "CPU", "MEMORY", "DOCKER", "TERRAFORM", "AGE")


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _cond(status: dict[str, Any], type_: str) -> str:
    found = raw_condition(status, type_)
    return str(found.get("status", "")) if found else "-"


def node_rows(kubeconfig: str | None, lease_namespace: str = LEASE_NAMESPACE) -> list[list[str]]:
    """One row per StewardNode; READY is Unknown once its Lease ran out (by this clock)."""
    clients = build_clients(kubeconfig)
    coordination = kubernetes.client.CoordinationV1Api(clients.core.api_client)  # type: ignore[no-untyped-call]
    nodes: dict[str, Any] = clients.custom.list_cluster_custom_object(  # type: ignore[assignment]
        API_GROUP, API_VERSION, NODE_PLURAL
    )
    now = datetime.now(UTC)
    rows = []
    for node in sorted(nodes.get("items", []), key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        status = node.get("status") or {}
        try:
            spec = coordination.read_namespaced_lease(lease_name(name), lease_namespace).spec
        except kubernetes.client.ApiException:
            spec = None
        renewed = spec.renew_time if spec is not None else None
        duration = float(spec.lease_duration_seconds or 0) if spec is not None else 0.0
        ready = _cond(status, NODE_READY)
        if ready == "True" and lease_expired(renewed, duration, now):
            ready = "Unknown"
        alloc = status.get("allocatable", {})
        created = datetime.fromisoformat(
            node["metadata"]["creationTimestamp"].replace("Z", "+00:00")
        )
        rows.append(
            [
                name,
                ready,
                _ago(renewed, now),
                f"{status.get('services', 0)}/{alloc.get('services', '-')}",
                str(alloc.get("cpu", "-")),
                str(alloc.get("memory", "-")),
                _cond(status, DOCKER_READY),
                _cond(status, TERRAFORM_READY),
                _ago(created, now),
            ]
        )
    return rows


def format_rows(rows: list[list[str]]) -> str:
    table = [list(COLUMNS), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )
