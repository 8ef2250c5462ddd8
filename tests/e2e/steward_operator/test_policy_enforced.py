"""The operator enforces StewardPolicies before anything starts, even without admission.

The ValidatingAdmissionPolicy is not installed here (as when it was installed
late, or bypassed): the engine's own check is what stops the denied service.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import msvc
from tests.support.operator import Operator
from tests.support.waits import wait_for


@pytest.mark.usefixtures("policy_crd_installed")
def test_the_operator_refuses_what_the_policy_denies(
    control_plane: Any, crd_installed: None, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    kubectl("label", "namespace", namespace, f"e2e-policy={namespace}")
    policy = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "StewardPolicy",
        "metadata": {"name": f"{namespace}-only-usr-bin"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"e2e-policy": namespace}},
            "daemon": {"commands": ["/usr/bin/"]},
        },
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))
    op = Operator(
        control_plane,
        namespace,
        tmp_path / "state",
        tmp_path / "operator.log",
        extra_args=("--enforce-policy",),
    )
    op.start()
    try:
        apply(
            kubectl, namespace, msvc("allowed", {"daemon": {"command": ["/usr/bin/sleep", "600"]}})
        )
        denied = {"daemon": {"command": [sys.executable, "-c", "import time; time.sleep(600)"]}}
        apply(kubectl, namespace, msvc("denied", denied))
        wait_ready(kubectl, namespace, "allowed")

        def stalled() -> dict[str, Any] | None:
            st = get(kubectl, namespace, "denied").get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions", [])}
            return conds if conds.get("Stalled", {}).get("status") == "True" else None

        conds = wait_for(stalled, timeout=60)
        assert conds["Ready"]["reason"] == "PolicyDenied"
        assert "daemon-command" in conds["Ready"]["message"]
        assert f"StewardPolicy {policy['metadata']['name']}" in conds["Ready"]["message"]
        st = get(kubectl, namespace, "denied")["status"]
        assert st["restarts"] == 0 and not st.get("runtime", {}).get("pid")
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
        denied_events = [
            e
            for e in events["items"]
            if e["involvedObject"]["name"] == "denied" and e["reason"] == "PolicyDenied"
        ]
        assert len(denied_events) == 1 and denied_events[0]["type"] == "Warning"
        kubectl("delete", "msvc", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    finally:
        op.stop()
        kubectl("delete", "stewardpolicy", policy["metadata"]["name"], check=False)
