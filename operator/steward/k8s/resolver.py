"""valueFrom against real Secrets and ConfigMaps of the resource's namespace."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes

from steward.api.common import KeySelector
from steward.k8s.clients import Clients


class ClusterResolver:
    """The engine's ValueResolver for one namespace (called from worker threads)."""

    def __init__(self, clients: Clients, namespace: str) -> None:
        self.clients = clients
        self.namespace = namespace
        self.versions: dict[tuple[str, str], str] = {}
        """(kind, name) -> resourceVersion seen, to notice changed references."""

    def read(self, kind: str, name: str) -> dict[str, str] | None:
        obj: Any
        try:
            if kind == "secret":
                obj = self.clients.core.read_namespaced_secret(name, self.namespace)
                data = {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
            else:
                obj = self.clients.core.read_namespaced_config_map(name, self.namespace)
                data = {k: str(v) for k, v in (obj.data or {}).items()}
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        self.versions[(kind, name)] = str(obj.metadata.resource_version)
        return data

    def __call__(self, kind: str, ref: KeySelector) -> str | None:
        data = self.read(kind, ref.name)
        return None if data is None else data.get(ref.key)
