"""The kubeconfig a sandboxed Terraform's kubernetes backend reads: the namespace's token.

Written where only the service's uid can read it (0600, its own), at a fixed path, so
the backend configuration never changes when the token is renewed (no re-init).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from steward.api import reasons as R
from steward.runtimes.base import RuntimeContext, RuntimeFailure
from steward.runtimes.sandbox.fs import write_private

KUBECONFIG_NAME = "backend.kubeconfig"


def kubeconfig_path(ctx: RuntimeContext) -> Path:
    return ctx.runtime_dir / KUBECONFIG_NAME


def write_backend_kubeconfig(ctx: RuntimeContext) -> Path:
    """Refresh the service's backend kubeconfig; RuntimeFailure when there are no credentials."""
    source = ctx.credentials
    creds = source.backend_credentials() if source is not None else None
    if creds is None or ctx.sandbox is None:
        raise RuntimeFailure(
            f"no credentials for the kubernetes backend in namespace {ctx.identity.namespace}: "
            "in a sandbox Terraform never gets the operator's; create the namespace's "
            "ServiceAccount for Steward's Terraform (docs/security.md)",
            R.BACKEND_CREDENTIALS_MISSING,
        )
    cluster: dict[str, object] = {"server": creds.server}
    if creds.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(creds.ca_pem.encode()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "steward", "cluster": cluster}],
        "users": [{"name": "steward", "user": {"token": creds.token}}],
        "contexts": [{"name": "steward", "context": {"cluster": "steward", "user": "steward"}}],
        "current-context": "steward",
    }
    path = kubeconfig_path(ctx)
    write_private(path, json.dumps(config), owner=ctx.sandbox)  # JSON is YAML to client-go
    return path
