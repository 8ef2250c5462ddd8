"""Every example in examples/ is applied to the real apiserver and becomes Ready."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.support.kubectl import wait_ready

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


@pytest.fixture
def example_images(docker_images: Any) -> Iterator[None]:
    """The container example names busybox:1.36; no registry here, so tag the local busybox."""
    client = docker.from_env()
    created = False
    try:
        client.images.get("busybox:1.36")
    except docker.errors.ImageNotFound:
        client.images.get(docker_images.busybox).tag("busybox", "1.36")
        created = True
    yield
    if created:
        client.images.remove("busybox:1.36", noprune=True)
    client.close()


def example_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_examples_apply_and_become_ready(operator, kubectl, namespace, example_images) -> None:  # type: ignore[no-untyped-def]
    docs = [
        d for d in example_documents() if d["kind"] in ("ManagedService", "Secret", "ConfigMap")
    ]
    for d in docs:
        d["metadata"].pop("namespace", None)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "ManagedService"]
    assert {
        "http-daemon",
        "python-callable",
        "env-from-secret",
        "web-container",
        "terraform-module",
    } <= set(names)
    for name in names:
        wait_ready(kubectl, namespace, name, timeout=180)
    table = kubectl("get", "msvc", "-n", namespace).stdout
    print(table)
    items = json.loads(kubectl("get", "msvc", "-n", namespace, "-o", "json").stdout)["items"]
    flavors = {i["metadata"]["name"]: i["status"]["flavor"] for i in items}
    assert flavors["web-container"] == "container" and flavors["terraform-module"] == "terraform"
    uri = next(i for i in items if i["metadata"]["name"] == "terraform-module")["status"][
        "endpoint"
    ]["uri"]
    assert uri == "https://staging.example.internal:8443/api"


def test_argocd_application_points_at_examples() -> None:
    app = next(d for d in example_documents() if d["kind"] == "Application")
    assert app["spec"]["source"]["path"] == "examples"
    # The GitOps manifests themselves are not synced (docs/gitops.md).
    assert app["spec"]["source"]["directory"]["exclude"] == (
        "{argocd-application.yaml,flux-kustomization.yaml}"
    )
