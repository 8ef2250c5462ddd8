"""Per-namespace credentials for sandboxed work: a ServiceAccount token, never the operator's.

Like tofu-controller's runner ServiceAccounts: Terraform's kubernetes backend keeps
its state Secret and lock Lease in the service's own namespace, so it needs an API
identity there — but the operator's token can read every namespace's Secrets. The
operator asks the TokenRequest API for a short-lived token of a ServiceAccount the
namespace's admin created (and bound to a Role on Secrets and Leases there); what the
sandboxed Terraform can do is exactly what that Role allows.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import kubernetes

from steward.k8s.clients import Clients
from steward.runtimes.base import ClusterCredentials

TOKEN_SECONDS = 3600
REFRESH_FRACTION = 0.5
"""A token is replaced once half its lifetime has passed (a long apply keeps a valid one)."""


class ServiceAccountTokens:
    """``CredentialSource`` for one namespace: tokens of ServiceAccount ``account`` there."""

    def __init__(
        self, clients: Clients, namespace: str, account: str, seconds: int = TOKEN_SECONDS
    ) -> None:
        self.clients = clients
        self.namespace = namespace
        self.account = account
        self.seconds = seconds
        self._cached: ClusterCredentials | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()

    def backend_credentials(self) -> ClusterCredentials | None:
        with self._lock:
            now = time.time()
            if self._cached is not None and now < self._refresh_at:
                return self._cached
            request = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(
                    audiences=[], expiration_seconds=self.seconds
                )
            )
            try:
                answer = self.clients.core.create_namespaced_service_account_token(
                    self.account, self.namespace, request
                )
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            config = self.clients.core.api_client.configuration
            status = answer.status
            if status is None or not status.token:
                return None
            expires = status.expiration_timestamp
            expires_at = expires.timestamp() if expires is not None else now + self.seconds
            self._cached = ClusterCredentials(
                server=str(config.host),
                token=str(status.token),
                ca_pem=_ca_pem(config.ssl_ca_cert),
                expires_at=expires_at,
            )
            self._refresh_at = now + (expires_at - now) * REFRESH_FRACTION
            return self._cached


def _ca_pem(ca_file: str | None) -> str:
    if not ca_file:
        return ""
    return Path(ca_file).read_text()
