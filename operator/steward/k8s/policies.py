"""The engine's policy check in operator mode: refusals first, then the admin's policies.

Whatever the policies say, the operator refuses what would reach past the
tenant's own sandbox through the operator itself (``operator_refusals``: a
blocking daemon; an outputs Secret Steward did not create for the resource).
With ``--enforce-policy`` it also checks the StewardPolicies again before
anything starts, since admission (the ValidatingAdmissionPolicy) can be bypassed
or installed late. Policies and namespace labels are cached for a few seconds: a
start costs no API call in the steady state. Reading fails closed: if the
policies cannot be read, nothing starts (PolicyDenied says why).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import kubernetes

from steward.api.manifest import API_GROUP, API_VERSION, ManagedService
from steward.api.spec import DeletionPolicy
from steward.engine.policy import check, operator_refusals, select
from steward.k8s.clients import Clients
from steward.k8s.terraform import outputs_refusal

POLICY_PLURAL = "stewardpolicies"
CACHE_SECONDS = 5.0


class PolicySource:
    """Answers the engine's PolicyCheck for services of any namespace."""

    def __init__(
        self, clients: Clients, cache_seconds: float = CACHE_SECONDS, *, enforce: bool = True
    ) -> None:
        self.clients = clients
        self.enforce = enforce
        """Check the StewardPolicies too (``--enforce-policy``); the refusals always apply."""
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._policies: tuple[float, list[Mapping[str, Any]]] | None = None
        self._labels: dict[str, tuple[float, Mapping[str, str]]] = {}

    def for_namespace(self, namespace: str) -> Any:
        def policy(ms: ManagedService) -> list[str]:
            refused = operator_refusals(ms)
            outputs = outputs_refusal(self.clients, ms)
            refused += [outputs] if outputs else []
            if refused or not self.enforce:
                return refused
            try:
                policies = self.policies()
                labels = self.labels(namespace)
            except kubernetes.client.ApiException as exc:
                return [
                    f"policy-unreadable: cannot read StewardPolicies ({exc.status} {exc.reason})"
                ]
            return [v.message for v in check(policies, labels, ms)]

        return policy

    def requires_limits(self, namespace: str) -> bool:
        """Whether a policy selecting ``namespace`` says ``requireLimits``: then a sandboxed
        start refuses to run without enforced limits (no usable cgroups). Fails closed."""
        if not self.enforce:
            return False
        try:
            chosen = select(self.policies(), self.labels(namespace))
        except kubernetes.client.ApiException:
            return True
        return any(p.spec.require_limits for p in chosen)

    def orphan_denied(self, ms: ManagedService) -> str | None:
        """At deletion: why ``deletionPolicy: Orphan`` must not be honoured (None: it may).

        A spec changed to Orphan after the start is judged here too (admission would have
        refused the change; without it the finalizer is the last check). Fails closed.
        """
        if not self.enforce or ms.spec.deletion_policy is not DeletionPolicy.ORPHAN:
            return None
        try:
            found = check(self.policies(), self.labels(ms.metadata.namespace), ms)
        except kubernetes.client.ApiException as exc:
            return f"policy-unreadable: cannot read StewardPolicies ({exc.status} {exc.reason})"
        return next((v.message for v in found if v.rule == "deletion-orphan"), None)

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
