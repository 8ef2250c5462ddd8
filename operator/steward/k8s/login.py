"""kopf's login from the kubeconfig Steward was told to use.

kopf's own ``login_via_client`` loads the in-cluster config or ``$KUBECONFIG`` by
itself, so with ``--kubeconfig`` the watches ran as one identity and Steward's writes
as another. This reads the same configuration as :func:`clients.build_clients` and
hands kopf what it needs from it, as kopf's function does.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

from steward.k8s.clients import load_configuration


def connection_info(kubeconfig: str | None, trust_env: bool = False) -> kopf.ConnectionInfo:
    """The server, CA and credentials of ``kubeconfig`` (None: in-cluster, then $KUBECONFIG)."""
    config = kubernetes.client.Configuration()
    load_configuration(kubeconfig, into=config)
    # A token may live under either key depending on the client version; auth providers
    # refresh it through this call.
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        trust_env=trust_env,
    )


def login(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """A kopf login handler: the operator config's kubeconfig (``memo.config``)."""
    config = getattr(memo, "config", None)
    return connection_info(
        getattr(config, "kubeconfig", None), trust_env=settings.networking.trust_env
    )
