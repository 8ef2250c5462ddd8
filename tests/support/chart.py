"""The Helm chart under test (charts/steward): where it is and what its objects hold."""

from __future__ import annotations

from typing import Any

from tests.support.paths import CHART

__all__ = ["CHART", "KOPF_CRDS", "MS_CRD", "POLICY_CRD", "container", "pod_spec"]

KOPF_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
MS_CRD = "managedservices.steward.dev"
POLICY_CRD = "stewardpolicies.steward.dev"


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment or DaemonSet."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(deploy: dict[str, Any], name: str = "operator") -> dict[str, Any]:
    return next(c for c in pod_spec(deploy)["containers"] if c["name"] == name)
