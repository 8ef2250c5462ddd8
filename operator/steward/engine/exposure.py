"""``endpoint.expose: Cluster``: the Service and EndpointSlice a ManagedService should have.

Pure functions of the resource as the API shows it (a dict, no client): the k8s adapter
applies what they return. The slice follows the status, so everything that changes the
status moves it: the agent reporting Ready, the controller writing ``NodeLost`` for a silent
host, a rebinding that makes the old host's report stale (``reportedEpoch`` behind
``epoch``), deletion. A stale or lost host's address is therefore not ready before any
other host can have reported, which is the ordering failover needs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steward.api import reasons as R
from steward.api.endpoint import EndpointProtocol, Expose
from steward.api.manifest import API_GROUP, API_VERSION, KIND
from steward.api.state import ServiceState
from steward.api.status import HealthState, raw_condition

MANAGED_BY = "steward"
"""``app.kubernetes.io/managed-by`` on both objects."""
OWNER_LABEL = "steward.dev/managedservice"
"""The ManagedService's name: a Service without it was not made by Steward and is left alone."""
SLICE_MANAGER = "controller.steward.dev"
"""``endpointslice.kubernetes.io/managed-by``: the EndpointSlice controller skips such slices."""
SLICE_SUFFIX = "-steward"
"""The slice's name is the Service's plus this (never one of the generated ``NAME-xxxxx``)."""
PORT_NAME = "endpoint"


@dataclass(frozen=True)
class EndpointConditions:
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class Exposure:
    """What should exist for one resource; None for both: nothing (delete what is there)."""

    service: dict[str, Any] | None
    endpoint_slice: dict[str, Any] | None


NOTHING = Exposure(None, None)


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def exposed(body: Mapping[str, Any]) -> bool:
    return bool(_get(body, "spec", "endpoint", "expose") == Expose.CLUSTER.value)


def routable(address: str | None) -> str | None:
    """The address if pods can reach it: an IP literal, never loopback, link-local,
    unspecified or multicast (a hostname is not an EndpointSlice address either)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return None
    return str(ip)


def current_report(status: Mapping[str, Any]) -> bool:
    """The status was written by the host that holds the binding in force (or there is no
    binding at all: ``steward run`` serves everything from one host)."""
    placement = status.get("placement")
    if not isinstance(placement, Mapping) or not placement:
        return True
    epoch = placement.get("epoch")
    return bool(placement.get("nodeName")) and placement.get("reportedEpoch") == epoch


def conditions(body: Mapping[str, Any]) -> EndpointConditions:
    """ready / serving / terminating as Kubernetes means them for a Pod's endpoint:
    serving is ready-ignoring-termination, and neither holds for a lost or stale host."""
    status = body.get("status") or {}
    ready_cond = raw_condition(status, R.READY)
    terminating = (
        bool(_get(body, "metadata", "deletionTimestamp"))
        or status.get("state") == ServiceState.PENDING_SHUTDOWN.value
        or _get(body, "spec", "adminState") == "inactive"
    )
    trusted = current_report(status) and ready_cond.get("reason") != R.NODE_LOST
    serving = (
        trusted
        and _get(status, "health", "state") == HealthState.HEALTHY.value
        and status.get("state") in (ServiceState.ACTIVE.value, ServiceState.PENDING_SHUTDOWN.value)
    )
    ready = serving and not terminating and ready_cond.get("status") == "True"
    return EndpointConditions(ready=ready, serving=serving, terminating=terminating)


def _app_protocol(protocol: Any) -> dict[str, str]:
    if protocol in (EndpointProtocol.HTTP.value, EndpointProtocol.HTTPS.value):
        return {"appProtocol": str(protocol)}
    return {}


def _meta(body: Mapping[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "name": name,
        "namespace": meta.get("namespace", "default"),
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: meta["name"], **labels},
        "ownerReferences": [
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "uid": meta.get("uid", ""),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def desired(body: Mapping[str, Any]) -> Exposure:
    """The Service (selector-less ClusterIP on the spec's port) and its EndpointSlice (the
    host's address and actual port, conditions from the status); NOTHING when not exposed."""
    if not exposed(body) or not _get(body, "metadata", "name"):
        return NOTHING
    name = body["metadata"]["name"]
    spec_ep = _get(body, "spec", "endpoint") or {}
    protocol = spec_ep.get("protocol", EndpointProtocol.TCP.value)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(body, name, {}),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {
                    "name": PORT_NAME,
                    "protocol": "TCP",
                    "port": spec_ep["port"],
                    **_app_protocol(protocol),
                }
            ],
        },
    }
    st_ep = _get(body, "status", "endpoint") or {}
    address = routable(st_ep.get("host"))
    port = st_ep.get("port")
    endpoints: list[dict[str, Any]] = []
    if address is not None and port:
        c = conditions(body)
        endpoints.append(
            {
                "addresses": [address],
                "conditions": {
                    "ready": c.ready,
                    "serving": c.serving,
                    "terminating": c.terminating,
                },
            }
        )
    family = "IPv6" if address is not None and ":" in address else "IPv4"
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            body,
            name + SLICE_SUFFIX,
            {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
        ),
        "addressType": family,
        "ports": [
            {
                "name": PORT_NAME,
                "protocol": "TCP",
                "port": port or spec_ep["port"],
                **_app_protocol(protocol),
            }
        ],
        "endpoints": endpoints,
    }
    return Exposure(service=service, endpoint_slice=endpoint_slice)


def ours(obj: Mapping[str, Any] | None, name: str) -> bool:
    """An existing object Steward made for the ManagedService ``name`` (may be replaced)."""
    return bool(_get(obj, "metadata", "labels", OWNER_LABEL) == name)
