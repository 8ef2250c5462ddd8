"""Invalid ManagedServices are rejected at admission by the CRD schema and CEL rules."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

D = {"command": ["x"]}

# (case id, spec, text the rejection must contain: the field or the rule's message)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-flavor", {}, "exactly one of spec.daemon, spec.container or spec.terraform"),
    ("two-flavors", {"daemon": D, "container": {"image": "x"}}, "exactly one of spec.daemon"),
    ("daemon-empty", {"daemon": {}}, "daemon: set exactly one of command or python"),
    (
        "daemon-both",
        {"daemon": {"command": ["x"], "python": {"callable": "a:b"}}},
        "daemon: set exactly one of command or python",
    ),
    ("command-empty", {"daemon": {"command": []}}, "spec.daemon.command"),
    ("port-too-big", {"daemon": D, "endpoint": {"port": 70000}}, "spec.endpoint.port"),
    ("port-negative", {"daemon": D, "endpoint": {"port": -1}}, "spec.endpoint.port"),
    ("port-string", {"daemon": D, "endpoint": {"port": "http"}}, "spec.endpoint.port"),
    ("protocol-enum", {"daemon": D, "endpoint": {"protocol": "ftp"}}, "spec.endpoint.protocol"),
    (
        "fixed-port-missing",
        {"daemon": D, "endpoint": {"allocatePort": False}},
        "endpoint: allocatePort: false needs a port to use",
    ),
    (
        "expose-enum",
        {"daemon": D, "endpoint": {"port": 8080, "expose": "LoadBalancer"}},
        "spec.endpoint.expose",
    ),
    (
        "expose-no-port",
        {"daemon": D, "endpoint": {"expose": "Cluster"}},
        "endpoint: expose: Cluster needs a port",
    ),
    (
        "expose-own-host",
        {"daemon": D, "endpoint": {"port": 8080, "host": "0.0.0.0", "expose": "Cluster"}},
        "with expose: Cluster the service binds on its host's address",
    ),
    (
        "expose-terraform",
        {"terraform": {"module": {"path": "/m"}}, "endpoint": {"port": 80, "expose": "Cluster"}},
        "endpoint.expose: Cluster needs a flavor that listens on its host",
    ),
    (
        "9-exposed",
        {"daemon": D, "endpoint": {"port": 8080, "expose": "Cluster"}},
        "metadata.name must start with a letter under endpoint.expose: Cluster",
    ),
    ("restart-enum", {"daemon": D, "restartPolicy": "Sometimes"}, "spec.restartPolicy"),
    ("admin-enum", {"daemon": D, "adminState": "paused"}, "spec.adminState"),
    ("deletion-enum", {"daemon": D, "deletionPolicy": "Keep"}, "spec.deletionPolicy"),
    (
        "failure-threshold-zero",
        {"daemon": D, "endpoint": {"healthCheck": {"failureThreshold": 0}}},
        "spec.endpoint.healthCheck.failureThreshold",
    ),
    (
        "period-zero",
        {"daemon": D, "endpoint": {"healthCheck": {"periodSeconds": 0}}},
        "spec.endpoint.healthCheck.periodSeconds",
    ),
    (
        "http-and-tcp",
        {"daemon": D, "endpoint": {"healthCheck": {"http": {}, "tcp": {}}}},
        "healthCheck: set http or tcp, not both",
    ),
    (
        "expected-status",
        {"daemon": D, "endpoint": {"healthCheck": {"http": {"expectedStatus": 700}}}},
        "spec.endpoint.healthCheck.http.expectedStatus",
    ),
    (
        "http-path",
        {"daemon": D, "endpoint": {"healthCheck": {"http": {"path": "healthz"}}}},
        "spec.endpoint.healthCheck.http.path",
    ),
    (
        "method-enum",
        {"daemon": D, "endpoint": {"healthCheck": {"http": {"method": "POST"}}}},
        "spec.endpoint.healthCheck.http.method",
    ),
    ("stop-signal", {"daemon": {"command": ["x"], "stopSignal": "TERM"}}, "spec.daemon.stopSignal"),
    (
        "callable-pattern",
        {"daemon": {"python": {"callable": "not callable"}}},
        "spec.daemon.python.callable",
    ),
    (
        "env-both",
        {
            "daemon": {
                "command": ["x"],
                "env": [
                    {
                        "name": "A",
                        "value": "1",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                    }
                ],
            }
        },
        "env: set value or valueFrom, not both",
    ),
    (
        "env-source-none",
        {"daemon": {"command": ["x"], "env": [{"name": "A", "valueFrom": {}}]}},
        "valueFrom: set exactly one of secretKeyRef or configMapKeyRef",
    ),
    (
        "env-name",
        {"daemon": {"command": ["x"], "env": [{"name": "A=B", "value": "1"}]}},
        "spec.daemon.env[0].name",
    ),
    (
        "backoff-order",
        {"daemon": D, "backoff": {"initialSeconds": 60, "maxSeconds": 5}},
        "backoff: maxSeconds must be >= initialSeconds",
    ),
    (
        # the models compare with the default maxSeconds (300): so must admission
        "backoff-over-default-cap",
        {"daemon": D, "backoff": {"initialSeconds": 600}},
        "backoff: maxSeconds must be >= initialSeconds",
    ),
    (
        "grace-negative",
        {"daemon": {"command": ["x"], "stopGracePeriodSeconds": -1}},
        "spec.daemon.stopGracePeriodSeconds",
    ),
    ("unknown-field", {"daemon": D, "bogusField": 1}, "bogusField"),
    ("container-no-image", {"container": {"image": ""}}, "spec.container.image"),
    (
        "container-pull-enum",
        {"container": {"image": "x", "imagePullPolicy": "Sometimes"}},
        "spec.container.imagePullPolicy",
    ),
    (
        "container-relative-volume",
        {"container": {"image": "x", "volumes": [{"hostPath": "../etc", "mountPath": "/data"}]}},
        "spec.container.volumes[0].hostPath",
    ),
    (
        "container-memory-quantity",
        {"container": {"image": "x", "resources": {"memory": "lots"}}},
        "spec.container.resources.memory",
    ),
    (
        "container-privileged-type",
        {"container": {"image": "x", "privileged": "yes"}},
        "spec.container.privileged",
    ),
    (
        "container-port-range",
        {"container": {"image": "x", "containerPort": 0}},
        "spec.container.containerPort",
    ),
    (
        "tf-no-module-source",
        {"terraform": {"module": {}}},
        "module: set exactly one of inline or path",
    ),
    (
        "tf-inline-traversal",
        {"terraform": {"module": {"inline": {"../../etc/cron.d/x.tf": "x"}}}},
        "module.inline: file names are plain names",
    ),
    (
        "tf-binary-enum",
        {"terraform": {"module": {"path": "/m"}, "binary": "pulumi"}},
        "spec.terraform.binary",
    ),
    (
        "tf-drift-interval",
        {"terraform": {"module": {"path": "/m"}, "driftDetection": {"intervalSeconds": -5}}},
        "spec.terraform.driftDetection.intervalSeconds",
    ),
    (
        "oversized-env-value",
        {"daemon": {"command": ["x"], "env": [{"name": "BIG", "value": "x" * 70000}]}},
        "spec.daemon.env[0].value",
    ),
    ("oversized-argv", {"daemon": {"command": ["x" * 70000]}}, "spec.daemon.command[0]"),
]

# metadata.name becomes part of process, container and state names: only DNS-1123 labels.
INVALID_NAMES = [("name-with-dots", "a.b.c"), ("name-too-long", "n" * 64)]


@pytest.mark.parametrize(("case", "spec", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_rejected(
    crd_installed, kubectl, namespace, case: str, spec: dict[str, Any], expected: str
) -> None:  # type: ignore[no-untyped-def]
    doc = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": case},
        "spec": spec,
    }
    res = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert res.returncode != 0, f"{case} was accepted"
    assert expected in res.stderr, res.stderr
    assert kubectl("get", "msvc", case, "-n", namespace, check=False).returncode != 0


@pytest.mark.parametrize(("case", "name"), INVALID_NAMES, ids=[c[0] for c in INVALID_NAMES])
def test_invalid_names_rejected(crd_installed, kubectl, namespace, case: str, name: str) -> None:  # type: ignore[no-untyped-def]
    doc = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": name},
        "spec": {"daemon": D},
    }
    res = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert res.returncode != 0 and "metadata.name must be a DNS-1123 label" in res.stderr, (
        res.stderr
    )


def test_every_case_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "reliability.md").read_text()
    missing = [case for case, *_ in INVALID + INVALID_NAMES if f"`{case}`" not in doc]
    assert not missing, f"docs/reliability.md lacks {missing}"


def test_valid_manifest_accepted_as_written(crd_installed, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    """No defaults are written into users' objects (GitOps tools would see drift)."""
    doc = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": "ok"},
        "spec": {"daemon": {"command": ["sleep", "1"]}},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    stored = yaml.safe_load(kubectl("get", "msvc", "ok", "-n", namespace, "-o", "yaml").stdout)
    assert stored["spec"] == doc["spec"]
    explain = kubectl("explain", "managedservice.spec.endpoint.healthCheck").stdout
    assert "failureThreshold" in explain and "Consecutive failures" in explain
