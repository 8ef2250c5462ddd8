"""The CRD is generated from the models; the committed file must match the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from steward.api.crd import crd, crd_yaml
from tests.support.schemas import walk

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "crds" / "managedservices.steward.dev.yaml"


def test_committed_crd_matches_generator() -> None:
    assert COMMITTED.read_text() == crd_yaml(), "crds/ is stale: run `make crd`"


def test_committed_reference_matches_generator() -> None:
    from steward.api.reference import reference_markdown

    committed = (REPO / "docs" / "reference.md").read_text()
    assert committed == reference_markdown(), "docs/reference.md is stale: run `make crd`"
    assert "`spec.endpoint.healthCheck.failureThreshold`" in committed


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


STATUS_DEFAULT = ("default", ".properties.status", {"observedGeneration": 0})
"""Spec fields get no defaults (the apiserver would write them into what GitOps owns); status
starts as observedGeneration 0 so kstatus waits for Steward's first look."""


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        for banned in (
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "discriminator",
            "title",
            "default",
            "const",
        ):
            # "properties" maps may contain a field literally named like these; check schema nodes only
            if banned in node and not path.endswith(".properties"):
                if (banned, path, node.get(banned)) == STATUS_DEFAULT:
                    continue  # the one default on purpose: "not yet observed" for kstatus
                raise AssertionError(f"{banned} at {path}")
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        if any(
            k in node for k in ("properties", "items", "enum", "pattern", "minimum", "maxLength")
        ):
            # x-kubernetes-int-or-string (a quantity) is typed by the extension, as in Kubernetes.
            assert "type" in node or node.get("x-kubernetes-int-or-string"), f"no type at {path}"


def test_every_field_is_described() -> None:
    missing = []
    for path, node in walk(schema()["properties"]["spec"]):
        if path.endswith(".properties"):
            for name, sub in node.items():
                if not sub.get("description"):
                    missing.append(f"{path}.{name}")
    assert not missing, missing


def test_cel_rules_and_printer_columns() -> None:
    spec = schema()["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("has(self.daemon)" in r for r in rules)
    version = crd()["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Type",
        "State",
        "Endpoint",
        "Health",
        "Ready",
        "Reason",
        "Node",
        "Age",
    ]
    assert version["subresources"] == {"status": {}}
    names = crd()["spec"]["names"]
    assert names["shortNames"] == ["msvc"] and "steward" in names["categories"]


def test_yaml_is_loadable() -> None:
    assert (
        yaml.safe_load(COMMITTED.read_text())["metadata"]["name"] == "managedservices.steward.dev"
    )
