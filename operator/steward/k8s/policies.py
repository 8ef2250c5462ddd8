"""The admin's StewardPolicies and namespace labels, read for the engine's policy check.

Admission (the ValidatingAdmissionPolicy) can be bypassed or installed late, so
the operator checks again before anything starts. Both lists are cached for a
few seconds: a start costs no API call in the steady state. Reading fails
closed: if the policies cannot be read, nothing starts (PolicyDenied says why).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import kubernetes

from steward.api.manifest import API_GROUP, API_VERSION, ManagedService
from steward.engine.policy import check
from steward.k8s.clients import Clients

POLICY_PLURAL = "stewardpolicies"
CACHE_SECONDS = 5.0


class PolicySource:
    """Answers the engine's PolicyCheck for services of any namespace."""

    def __init__(self, clients: Clients, cache_seconds: float = CACHE_SECONDS) -> None:
        self.clients = clients
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._policies: tuple[float, list[Mapping[str, Any]]] | None = None
        self._labels: dict[str, tuple[float, Mapping[str, str]]] = {}

    def for_namespace(self, namespace: str) -> Any:
        def policy(ms: ManagedService) -> list[str]:
            try:
                policies = self.policies()
                labels = self.labels(namespace)
            except kubernetes.client.ApiException as exc:
                return [
                    f"policy-unreadable: cannot read StewardPolicies ({exc.status} {exc.reason})"
                ]
            return [v.message for v in check(policies, labels, ms)]

        return policy

    def policies(self) -> list[Mapping[str, Any]]:
        with self._lock:
            if self._policies and time.monotonic() - self._policies[0] < self.cache_seconds:
                return self._policies[1]
        listed: Any = self.clients.custom.list_cluster_custom_object(
            API_GROUP, API_VERSION, POLICY_PLURAL
        )
        items: list[Mapping[str, Any]] = list(listed.get("items", []))
        with self._lock:
            self._policies = (time.monotonic(), items)
        return list(items)

    def labels(self, namespace: str) -> Mapping[str, str]:
        with self._lock:
            hit = self._labels.get(namespace)
            if hit and time.monotonic() - hit[0] < self.cache_seconds:
                return hit[1]
        ns: Any = self.clients.core.read_namespace(namespace)
        labels = dict((ns.metadata.labels if ns.metadata else None) or {})
        with self._lock:
            self._labels[namespace] = (time.monotonic(), labels)
        return labels
