"""The Kubernetes side of Terraform services: varsFrom, outputs Secret, state Secret cleanup.

The outputs Secret is written with the operator's credentials, so it is written
(and deleted) only when Steward created it for this very resource: labelled
``app.kubernetes.io/managed-by=steward`` and ``steward.dev/owner=<uid>``, with an
ownerReference to the ManagedService. Anyone else's Secret of that name is left alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes

from steward.api.manifest import ManagedService
from steward.api.policy import MANAGED_BY, MANAGED_BY_LABEL, OWNER_LABEL
from steward.api.terraform import TerraformSpec
from steward.engine.policy import outputs_secret_refusal, owns_secret
from steward.engine.service import Service
from steward.k8s.clients import Clients
from steward.runtimes.terraform import TerraformRuntime


class SecretNotOwned(Exception):
    """The outputs Secret exists and Steward did not create it for this resource."""


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body.meta["name"],
        "uid": body.meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _read(clients: Clients, namespace: str, name: str) -> Any:
    """The Secret, or None when there is none."""
    try:
        return clients.core.read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _ownership(secret: Any) -> tuple[dict[str, str], list[str]]:
    meta = secret.metadata
    labels = dict((meta.labels if meta else None) or {})
    uids = [str(r.uid) for r in ((meta.owner_references if meta else None) or [])]
    return labels, uids


def outputs_refusal(clients: Clients, ms: ManagedService) -> str | None:
    """Before a start: why this resource's outputs Secret must not be written (None: fine).

    A read error other than 404 refuses nothing here; the write checks again.
    """
    t = ms.spec.terraform
    target = t.write_outputs_to_secret if t is not None else None
    if target is None:
        return None
    try:
        secret = _read(clients, ms.metadata.namespace, target.name)
    except kubernetes.client.ApiException:
        return None
    if secret is None:
        return None
    labels, uids = _ownership(secret)
    return outputs_secret_refusal(target.name, labels, uids, ms.metadata.uid or "")


def sync_outputs_secret(clients: Clients, body: kopf.Body, svc: Service, last_digest: str) -> str:
    """Write outputs (sensitive included) to the requested Secret when they changed.

    Returns the digest of what is written, so the caller writes only on change.
    Raises SecretNotOwned when a Secret of that name exists that Steward did not
    create for this resource. The write is conditional on the resourceVersion read,
    so a Secret swapped in meanwhile is not overwritten either.
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
    ns, uid = str(body.meta.get("namespace")), str(body.meta["uid"])
    existing = _read(clients, ns, target.name)
    if existing is not None:
        labels, uids = _ownership(existing)
        refusal = outputs_secret_refusal(target.name, labels, uids, uid)
        if refusal is not None:
            raise SecretNotOwned(refusal)
    secret = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(
            name=target.name,
            namespace=ns,
            labels={MANAGED_BY_LABEL: MANAGED_BY, OWNER_LABEL: uid},
            owner_references=[_owner(body)],
            resource_version=existing.metadata.resource_version if existing else None,
        ),
        string_data=data,
        type="Opaque",
    )
    if existing is None:
        clients.core.create_namespaced_secret(ns, secret)  # 409: raced; read again next time
    else:
        clients.core.replace_namespaced_secret(target.name, ns, secret)
    return digest


def _delete_outputs_secret(clients: Clients, svc: Service, spec: TerraformSpec) -> None:
    """The outputs Secret goes with its resource, when it is Steward's for that resource."""
    target, uid = spec.write_outputs_to_secret, svc.manifest.metadata.uid or ""
    if target is None:
        return
    secret = _read(clients, svc.identity.namespace, target.name)
    if secret is None:
        return
    labels, uids = _ownership(secret)
    if not owns_secret(labels, uids, uid):
        return
    precondition = kubernetes.client.V1Preconditions(
        uid=secret.metadata.uid, resource_version=secret.metadata.resource_version
    )
    try:
        clients.core.delete_namespaced_secret(
            target.name,
            svc.identity.namespace,
            body=kubernetes.client.V1DeleteOptions(preconditions=precondition),
        )
    except kubernetes.client.ApiException as exc:
        if exc.status not in (404, 409):  # gone, or replaced by someone else's: leave it
            raise


def delete_state(clients: Clients, svc: Service) -> None:
    """After a stop: remove the outputs Secret Steward owns and, after a destroy, the
    kubernetes backend's state Secret and lock Lease."""
    spec = svc.flavor_spec
    if not isinstance(spec, TerraformSpec):
        return  # only Terraform keeps state in the cluster
    _delete_outputs_secret(clients, svc, spec)
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
