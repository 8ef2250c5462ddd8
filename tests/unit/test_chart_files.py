"""The Helm chart's static files and kind-config.yaml (no cluster, no helm binary needed).

Rendering, `helm lint` and the chart against a real apiserver are in
tests/e2e/test_chart.py; its RBAC is proven in tests/e2e/test_rbac.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import steward

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "steward"
CRD = "managedservices.steward.dev.yaml"


def test_chart_crd_is_byte_identical_to_crds_dir() -> None:
    top, chart = REPO / "crds" / CRD, CHART / "crds" / CRD
    assert chart.read_bytes() == top.read_bytes(), (
        f"{chart.relative_to(REPO)} differs from {top.relative_to(REPO)}: "
        f"cp crds/{CRD} charts/steward/crds/"
    )


def test_chart_crds_dir_holds_exactly_the_expected_crds() -> None:
    names = set()
    for path in sorted((CHART / "crds").iterdir()):
        assert path.suffix == ".yaml", f"unexpected file in the chart's crds/: {path.name}"
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            # Helm installs crds/ verbatim (no templating): only CRDs belong there.
            assert doc["kind"] == "CustomResourceDefinition", (path.name, doc["kind"])
            names.add(doc["metadata"]["name"])
    assert names == {
        "managedservices.steward.dev",
        "stewardpolicies.steward.dev",
        "stewardnodes.steward.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_kopf_peering_crds_match_what_kopf_looks_for() -> None:
    docs = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())
        if d
    }
    for name, scope, kind in (
        ("clusterkopfpeerings.kopf.dev", "Cluster", "ClusterKopfPeering"),
        ("kopfpeerings.kopf.dev", "Namespaced", "KopfPeering"),
    ):
        spec = docs[name]["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("kopf.dev", scope, kind)
        assert [v["name"] for v in spec["versions"]] == ["v1"]
        # kopf writes its peers' keep-alives into an arbitrary status map.
        status = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "steward"
    assert chart["type"] == "application"
    assert str(chart["appVersion"]) == steward.__version__ == "0.1.0"


def _schema_gaps(values: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """Keys of values.yaml that values.schema.json does not describe (recursively)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    gaps: list[str] = []
    if isinstance(values, dict) and "properties" in schema:
        for key, value in values.items():
            sub = schema["properties"].get(key)
            if sub is None:
                gaps.append(f"{path}.{key}")
            else:
                gaps.extend(_schema_gaps(value, sub, defs, f"{path}.{key}"))
    return gaps


def test_values_schema_describes_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert _schema_gaps(values, schema, schema.get("definitions", {}), "") == []
    # and nothing in the schema's top level is missing from values.yaml (documented defaults)
    assert set(schema["properties"]) - {"global"} == set(values)


@pytest.mark.parametrize(
    "template",
    ["deployment.yaml", "rbac.yaml", "serviceaccount.yaml", "peering.yaml", "_helpers.tpl"],
)
def test_templates_exist(template: str) -> None:
    assert (CHART / "templates" / template).is_file()


def test_kind_config_mounts_the_host_docker_socket() -> None:
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes = config["nodes"]
    assert nodes, "kind-config.yaml declares no nodes"
    for node in nodes:
        mounts = node.get("extraMounts") or []
        assert {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"} in [
            {k: m.get(k) for k in ("hostPath", "containerPath")} for m in mounts
        ], f"node {node.get('role')} lacks the Docker socket mount"
