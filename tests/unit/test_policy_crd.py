"""The StewardPolicy CRD, the admission policy and the policy reference are generated from the
models; the committed files must match the generators. The chart's default policy keeps the
quickstart examples working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steward.api.crd import admission_objects, admission_policy_spec, policy_crd
from steward.api.generated import GENERATED
from steward.api.manifest import ManagedService
from steward.api.policy import DEFAULT_POLICY_SPEC, POLICY_LABEL, RULES
from steward.engine.policy import check, evaluate
from tests.support.schemas import walk

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rel", sorted(GENERATED))
def test_committed_file_matches_generator(rel: str) -> None:
    assert (REPO / rel).read_text() == GENERATED[rel](), f"{rel} is stale: run `make crd`"


def test_policy_crd_shape() -> None:
    doc = policy_crd()
    spec = doc["spec"]
    assert spec["scope"] == "Cluster" and spec["names"]["shortNames"] == ["stwpol"]
    version = spec["versions"][0]
    assert "subresources" not in version
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "default", "const"):
            assert banned not in node or path.endswith(".properties"), f"{banned} at {path}"
    props = schema["properties"]["spec"]["properties"]
    assert {"namespaceSelector", "flavors", "daemon", "container", "terraform"} <= set(props)
    assert schema["properties"]["spec"]["required"] == ["namespaceSelector"]
    missing = [
        f"{path}.{name}"
        for path, node in walk(schema["properties"]["spec"])
        if path.endswith(".properties")
        for name, sub in node.items()
        if not sub.get("description")
    ]
    assert not missing, missing


def test_admission_policy_has_one_validation_per_rule_naming_it() -> None:
    spec = admission_policy_spec()
    assert spec["paramKind"] == {"apiVersion": "steward.dev/v1alpha1", "kind": "StewardPolicy"}
    assert spec["failurePolicy"] == "Fail"
    assert len(spec["validations"]) == len(RULES)
    for v, r in zip(spec["validations"], RULES, strict=True):
        assert v["messageExpression"].startswith(f"'{r.id}: ")
        assert v["expression"].startswith("!variables.selected || (")
    vap, binding, default = admission_objects()
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Deny"}
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert default["spec"] == DEFAULT_POLICY_SPEC


def test_chart_default_policy_is_the_api_default() -> None:
    values = yaml.safe_load((REPO / "charts" / "steward" / "values.yaml").read_text())
    assert values["policy"]["enabled"] is True and values["policy"]["default"]["enabled"] is True
    assert values["policy"]["default"]["spec"] == DEFAULT_POLICY_SPEC


def _example_services() -> list[dict[str, Any]]:
    out = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ManagedService":
                out.append(doc)
    return out


@pytest.mark.parametrize("doc", _example_services(), ids=lambda d: d["metadata"]["name"])
def test_examples_pass_the_chart_default_in_namespace_default(doc: dict[str, Any]) -> None:
    assert doc["metadata"].get("namespace", "default") == "default"
    ManagedService.parse(doc)
    default = {"metadata": {"name": "steward-default"}, "spec": DEFAULT_POLICY_SPEC}
    assert evaluate(default, doc) == []
    assert check([default], {"kubernetes.io/metadata.name": "default"}, doc) == []
    # ... and a namespace labelled out of the default is not selected by it
    assert check([default], {POLICY_LABEL: "team"}, doc) == []


def test_examples_exist() -> None:
    assert len(_example_services()) >= 5
