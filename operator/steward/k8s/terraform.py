"""The Kubernetes side of Terraform services: varsFrom, outputs Secret, state Secret cleanup."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes

from steward.api.terraform import TerraformSpec
from steward.engine.service import Service
from steward.k8s.clients import Clients
from steward.runtimes.terraform import TerraformRuntime


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body.meta["name"],
        "uid": body.meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def sync_outputs_secret(clients: Clients, body: kopf.Body, svc: Service, last_digest: str) -> str:
    """Write outputs (sensitive included) to the requested Secret when they changed.

    Returns the digest of what is written, so the caller writes only on change.
    The Secret is owned by the resource: deleting the resource deletes it.
    """
    spec: TerraformSpec = svc.flavor_spec
    target = spec.write_outputs_to_secret
    runtime = svc.runtime
    if target is None or not isinstance(runtime, TerraformRuntime):
        return last_digest
    values = runtime.outputs(include_sensitive=True)
    if target.outputs:
        values = {k: v for k, v in values.items() if k in target.outputs}
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    if digest == last_digest or not data:
        return last_digest
    ns = str(body.meta.get("namespace"))
    secret = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(
            name=target.name,
            namespace=ns,
            labels={"app.kubernetes.io/managed-by": "steward"},
            owner_references=[_owner(body)],
        ),
        string_data=data,
        type="Opaque",
    )
    try:
        clients.core.replace_namespaced_secret(target.name, ns, secret)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
        clients.core.create_namespaced_secret(ns, secret)
    return digest


def delete_state(clients: Clients, svc: Service) -> None:
    """After a destroy, remove the kubernetes backend's state Secret and lock Lease."""
    spec = svc.flavor_spec
    if not isinstance(spec, TerraformSpec):
        return  # only Terraform keeps state in the cluster
    k = spec.backend.kubernetes
    if k is None or not spec.destroy_on_stop:
        return
    suffix = k.secret_suffix or svc.identity.slug
    ns = k.namespace or svc.identity.namespace
    coordination = kubernetes.client.CoordinationV1Api(clients.core.api_client)  # type: ignore[no-untyped-call]
    deletions: list[Callable[[], object]] = [
        lambda: clients.core.delete_namespaced_secret(f"tfstate-default-{suffix}", ns),
        lambda: coordination.delete_namespaced_lease(f"lock-tfstate-default-{suffix}", ns),
    ]
    for delete in deletions:
        try:
            delete()
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
