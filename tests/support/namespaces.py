"""Namespaces for one test: created, then emptied, deleted and finalized.

There is no kube-controller-manager in the test control plane, so nothing would
empty a deleted namespace: the teardown deletes every namespaced object in it
itself, then deletes the namespace and finalizes it (what the namespace
controller does). Objects held by their own finalizers stay, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator

from tests.support.kubectl import Runner


def namespace_name(node_name: str, prefix: str = "e2e") -> str:
    """A unique, valid namespace name from a test's node name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"{prefix}-{slug}-{uuid.uuid4().hex[:6]}"


def finalize(kubectl: Runner, name: str) -> None:
    """Delete the namespace and clear its finalizers (what the namespace controller does)."""
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": []},
    }
    kubectl(
        "replace",
        "--raw",
        f"/api/v1/namespaces/{name}/finalize",
        "-f",
        "-",
        input=json.dumps(body),
        check=False,
    )


def delete_namespace(kubectl: Runner, name: str) -> None:
    """Empty the namespace of every namespaced object, then delete and finalize it."""
    resources = kubectl(
        "api-resources", "--namespaced=true", "--verbs=list,delete", "-o", "name", check=False
    ).stdout.split()
    if resources:
        kubectl(
            "delete",
            ",".join(resources),
            "--all",
            "-n",
            name,
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )
    finalize(kubectl, name)


@contextlib.contextmanager
def scratch_namespace(kubectl: Runner, prefix: str) -> Iterator[str]:
    """A namespace ``PREFIX-xxxxxx`` created here, deleted on exit."""
    with fresh_namespace(kubectl, f"{prefix}-{uuid.uuid4().hex[:6]}") as name:
        yield name


@contextlib.contextmanager
def fresh_namespace(kubectl: Runner, name: str) -> Iterator[str]:
    """The namespace NAME created here, deleted on exit."""
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        delete_namespace(kubectl, name)
