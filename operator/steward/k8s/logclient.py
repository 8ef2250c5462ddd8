"""`steward logs NAME -n NS` for a service on another host: from its agent's log endpoint.

The binding names the host (``status.placement.nodeName``); its StewardNode gives the address
and the agent's certificate, which is the only one trusted for that connection. The request
carries the user's own credentials from their kubeconfig (a bearer token, or a client
certificate the agent was told to accept), never the agent's, and the agent asks the
apiserver whether this user may ``get managedservices/log`` there.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import kubernetes

from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import NODE_PLURAL, StewardNode
from steward.k8s.clients import api_message, load_configuration

CONNECT_TIMEOUT = 10.0


class LogsUnavailable(Exception):
    """Why the logs cannot be read from the cluster, in one line."""


def _api_error(exc: kubernetes.client.ApiException, what: str) -> LogsUnavailable:
    return LogsUnavailable(f"cannot get {what}: {api_message(exc)}")


def _host_address(node: StewardNode) -> str | None:
    by_type = {a.type: a.address for a in reversed(node.status.addresses)}
    return by_type.get("InternalIP") or by_type.get("ExternalIP") or by_type.get("Hostname")


def _context(certificate: str, cfg: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=certificate)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if getattr(cfg, "cert_file", None) and getattr(cfg, "key_file", None):
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


def stream_logs(
    kubeconfig: str | None,
    namespace: str,
    name: str,
    tail: int | None,
    follow: bool,
    previous: bool = False,
) -> Iterator[str]:
    """The lines, as the agent of the service's host serves them."""
    cfg = kubernetes.client.Configuration()
    try:
        load_configuration(kubeconfig, into=cfg)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise LogsUnavailable(f"no cluster credentials: {exc}") from exc
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
            API_GROUP, API_VERSION, namespace, PLURAL, name
        )
    except kubernetes.client.ApiException as exc:
        raise _api_error(exc, f"managedservice {namespace}/{name}") from exc
    node_name = ((obj.get("status") or {}).get("placement") or {}).get("nodeName")
    if not node_name:
        raise LogsUnavailable(
            f"{namespace}/{name} is not bound to a host: it runs where `steward run` runs; "
            "read it there (steward logs with that --state-dir)"
        )
    try:
        node = StewardNode.parse(custom.get_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_PLURAL, node_name))  # fmt: skip
    except kubernetes.client.ApiException as exc:
        raise _api_error(exc, f"stewardnode {node_name}") from exc
    endpoint, address = node.status.log_endpoint, _host_address(node)
    if endpoint is None or address is None:
        raise LogsUnavailable(
            f"the agent of {node_name} serves no logs (start it with --serve --log-port "
            "and an --address)"
        )
    headers = {"Accept": "text/plain"}
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if token:
        headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
    elif not getattr(cfg, "cert_file", None):
        raise LogsUnavailable("the kubeconfig has neither a bearer token nor a client certificate")
    flags = (("tail", tail), ("follow", follow or None), ("previous", previous or None))
    query = {k: "true" if v is True else v for k, v in flags if v is not None}
    path = f"/logs/{urllib.parse.quote(namespace)}/{urllib.parse.quote(name)}"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    conn = http.client.HTTPSConnection(
        address, endpoint.port, context=_context(endpoint.certificate, cfg),
        timeout=CONNECT_TIMEOUT,
    )  # fmt: skip
    try:
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except (OSError, ssl.SSLError) as exc:
            raise LogsUnavailable(
                f"cannot reach the agent of {node_name} at {address}:{endpoint.port}: {exc}"
            ) from exc
        if resp.status != 200:
            body = resp.read(4096).decode(errors="replace").strip()
            raise LogsUnavailable(f"the agent of {node_name} answered {resp.status}: {body}")
        if conn.sock is not None and follow:
            conn.sock.settimeout(None)  # following may idle for as long as the service is quiet
        while True:
            line = resp.readline()
            if not line:
                return
            yield line.decode(errors="replace").rstrip("\n")
    finally:
        conn.close()
