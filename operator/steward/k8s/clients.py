"""Kubernetes API clients, built once at startup (in-cluster config or a kubeconfig)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import kubernetes


@dataclass
class Clients:
    core: kubernetes.client.CoreV1Api
    custom: kubernetes.client.CustomObjectsApi


def load_configuration(
    kubeconfig: str | None = None, into: kubernetes.client.Configuration | None = None
) -> None:
    """In-cluster when running in a pod and no kubeconfig is named, else the kubeconfig;
    into ``into``, or the process-wide default configuration when None."""
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=into)  # type: ignore[no-untyped-call]
            return
        except kubernetes.config.ConfigException:
            pass
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=into)  # type: ignore[no-untyped-call]


def build_clients(kubeconfig: str | None = None) -> Clients:
    """Clients over the process-wide configuration (``load_configuration``)."""
    load_configuration(kubeconfig)
    api = kubernetes.client.ApiClient()
    return Clients(
        core=kubernetes.client.CoreV1Api(api), custom=kubernetes.client.CustomObjectsApi(api)
    )


def api_message(exc: kubernetes.client.ApiException) -> str:
    """``STATUS message``: the apiserver's own message (which field, which rule), else the
    HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return f"{exc.status} {message or exc.reason}"
