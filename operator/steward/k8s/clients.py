"""Kubernetes API clients, built once at startup (in-cluster config or a kubeconfig)."""

from __future__ import annotations

from dataclasses import dataclass

import kubernetes


@dataclass
class Clients:
    core: kubernetes.client.CoreV1Api
    custom: kubernetes.client.CustomObjectsApi


def build_clients(kubeconfig: str | None = None) -> Clients:
    """In-cluster when running in a pod and no kubeconfig is named, else the kubeconfig."""
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    api = kubernetes.client.ApiClient()
    return Clients(
        core=kubernetes.client.CoreV1Api(api), custom=kubernetes.client.CustomObjectsApi(api)
    )
