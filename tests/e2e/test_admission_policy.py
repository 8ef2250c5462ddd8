"""StewardPolicy at admission: the generated ValidatingAdmissionPolicy on the real apiserver.

The CRDs, the VAP and its binding from deploy/admission-policy.yaml (the committed,
generated file) and two policies for two labelled namespaces; then one table of
ManagedServices (tests/support/policy_cases.py) is `kubectl apply`-ed, each rejected with
its rule's message or accepted, and the same table run through
``steward.engine.policy`` gives the same verdicts: the CEL and the Python are
checked against each other. Without a control plane this skips, except under
CI=true where it fails (tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from steward.api.policy import POLICY_LABEL, rule
from steward.engine.policy import check
from tests.support.kubectl import Runner, tool_runner
from tests.support.manifests import policy
from tests.support.namespaces import finalize
from tests.support.policy_cases import (
    CASES,
    RELAXED,
    RELAXED_LABEL,
    STRICT,
    STRICT_LABEL,
    Case,
    daemon,
)

REPO = Path(__file__).resolve().parents[2]
CRDS = [
    REPO / "crds" / "managedservices.steward.dev.yaml",
    REPO / "crds" / "stewardpolicies.steward.dev.yaml",
]
ADMISSION = REPO / "deploy" / "admission-policy.yaml"


@dataclass
class Setup:
    namespaces: dict[str, str]
    """policy label -> namespace name."""
    policies: list[dict[str, Any]]
    strict_name: str


def _finalize(kubectl: Runner, name: str) -> None:
    kubectl("delete", "managedservices", "--all", "-n", name, "--wait=false", check=False)
    finalize(kubectl, name)


def _apply(kubectl: Runner, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", *extra, "-f", "-", input=json.dumps(obj), check=False)


def _wait_denied(kubectl: Runner, obj: dict[str, Any], rule_id: str, timeout: float = 60) -> None:
    """The binding and params reach the admission plugin through informers: poll."""
    deadline = time.monotonic() + timeout
    while True:
        out = _apply(kubectl, obj, "--dry-run=server")
        if out.returncode != 0 and f"{rule_id}:" in out.stderr:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"policy not enforced after {timeout}s: {out.stdout}{out.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def setup(control_plane: Any) -> Iterator[Setup]:
    kubectl: Runner = tool_runner("kubectl", control_plane)
    for crd in CRDS:
        kubectl("apply", "--server-side", "-f", crd)
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/managedservices.steward.dev",
        "crd/stewardpolicies.steward.dev",
        "--timeout=60s",
    )
    docs = [d for d in yaml.safe_load_all(ADMISSION.read_text()) if d]
    admission = [d for d in docs if d["kind"] != "StewardPolicy"]  # our own policies instead
    assert {d["kind"] for d in admission} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    suffix = uuid.uuid4().hex[:6]
    policies = [policy(f"e2e-strict-{suffix}", STRICT), policy(f"e2e-relaxed-{suffix}", RELAXED)]
    namespaces = {label: f"pol-{label}-{suffix}" for label in (STRICT_LABEL, RELAXED_LABEL)}
    try:
        for label, ns in namespaces.items():
            kubectl("create", "namespace", ns)
            kubectl("label", "namespace", ns, f"{POLICY_LABEL}={label}")
        for obj in [*policies, *admission]:
            kubectl("apply", "-f", "-", input=json.dumps(obj))
        first_denial = {
            label: next(c for c in CASES if c.policy == label and c.denied_by)
            for label in namespaces
        }
        for label, case in first_denial.items():
            assert case.denied_by is not None
            _wait_denied(kubectl, case.manifest(namespaces[label]), case.denied_by)
        yield Setup(
            namespaces=namespaces, policies=policies, strict_name=policies[0]["metadata"]["name"]
        )
    finally:
        for obj in reversed(admission):
            kubectl(
                "delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False
            )
        for obj in policies:
            kubectl(
                "delete",
                "stewardpolicy",
                obj["metadata"]["name"],
                "--ignore-not-found",
                check=False,
            )
        for ns in namespaces.values():
            _finalize(kubectl, ns)


def _python_verdict(setup: Setup, label: str, manifest: dict[str, Any]) -> list[str]:
    return [v.message for v in check(setup.policies, {POLICY_LABEL: label}, manifest)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_admission_and_engine_agree(setup: Setup, kubectl: Runner, case: Case) -> None:
    manifest = case.manifest(setup.namespaces[case.policy])
    python = _python_verdict(setup, case.policy, manifest)
    out = _apply(kubectl, manifest)
    if case.denied_by is None:
        assert python == [], python
        assert out.returncode == 0, out.stderr
        return
    policy_name = next(
        p["metadata"]["name"] for p in setup.policies if case.policy in p["metadata"]["name"]
    )
    expected = rule(case.denied_by).full_message(policy_name)
    assert python and python[0] == expected, python
    assert out.returncode != 0, f"accepted, but the engine denies: {python}"
    assert "ValidatingAdmissionPolicy" in out.stderr and expected in out.stderr, out.stderr


def test_spec_updates_are_checked_and_metadata_patches_are_not(
    setup: Setup, kubectl: Runner
) -> None:
    ns = setup.namespaces[STRICT_LABEL]
    obj = Case("upd", STRICT_LABEL, daemon(), None).manifest(ns)
    assert _apply(kubectl, obj).returncode == 0
    blocked = {**obj, "spec": daemon(blocking=True)}
    out = _apply(kubectl, blocked)
    assert out.returncode != 0 and "daemon-blocking:" in out.stderr, out.stderr

    # tighten the policy under the existing object: daemons are no longer allowed
    patch = json.dumps({"spec": {"flavors": ["container"]}})
    kubectl("patch", "stewardpolicy", setup.strict_name, "--type=merge", "-p", patch)
    try:
        probe = Case("probe", STRICT_LABEL, daemon(), None).manifest(ns)
        _wait_denied(kubectl, probe, "flavor")
        # what the operator does to an existing object (finalizer, annotations) still passes
        meta = json.dumps(
            {
                "metadata": {
                    "finalizers": ["steward.dev/finalizer"],
                    "annotations": {"steward.dev/x": "1"},
                }
            }
        )
        kubectl("patch", "managedservice", "upd", "-n", ns, "--type=merge", "-p", meta)
        kubectl(
            "patch",
            "managedservice",
            "upd",
            "-n",
            ns,
            "--type=json",
            "-p",
            '[{"op": "remove", "path": "/metadata/finalizers"}]',
        )
        # ... but a spec change is judged by the policy as it is now
        grace = json.dumps({"spec": {"daemon": {"stopGracePeriodSeconds": 5}}})
        out = kubectl(
            "patch", "managedservice", "upd", "-n", ns, "--type=merge", "-p", grace, check=False
        )
        assert out.returncode != 0 and "flavor:" in out.stderr, out.stderr
    finally:
        restore = json.dumps({"spec": {"flavors": STRICT["flavors"]}})
        kubectl("patch", "stewardpolicy", setup.strict_name, "--type=merge", "-p", restore)


def test_a_namespace_under_both_policies_gets_the_most_restrictive(
    setup: Setup, kubectl: Runner
) -> None:
    """Every selecting policy applies: relaxed allows privileged, strict (by a second label) not."""
    name = f"pol-both-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        kubectl("label", "namespace", name, f"{POLICY_LABEL}={RELAXED_LABEL}")
        strict = setup.policies[0]
        both_in = [{"key": POLICY_LABEL, "operator": "In", "values": [STRICT_LABEL, RELAXED_LABEL]}]
        selector = {"matchLabels": None, "matchExpressions": both_in}  # merge patch: drop labels
        both = json.dumps({"spec": {"namespaceSelector": selector}})
        kubectl("patch", "stewardpolicy", strict["metadata"]["name"], "--type=merge", "-p", both)
        try:
            obj = Case(
                "both",
                RELAXED_LABEL,
                {
                    "container": {
                        "image": "busybox:1.36",
                        "privileged": True,
                        "user": "1000",
                        "resources": {"cpu": "500m", "memory": "64Mi"},
                    }
                },
                None,
            ).manifest(name)
            _wait_denied(kubectl, obj, "container-privileged")
            selected = [
                {**strict, "spec": {**STRICT, "namespaceSelector": {"matchExpressions": both_in}}},
                setup.policies[1],
            ]
            verdict = check(selected, {POLICY_LABEL: RELAXED_LABEL}, obj)
            assert [v.rule for v in verdict] == ["container-privileged"]
            assert verdict[0].policy == strict["metadata"]["name"]
        finally:
            restore = json.dumps(
                {
                    "spec": {
                        "namespaceSelector": {
                            "matchExpressions": None,
                            "matchLabels": STRICT["namespaceSelector"]["matchLabels"],
                        }
                    }
                }
            )
            kubectl(
                "patch", "stewardpolicy", strict["metadata"]["name"], "--type=merge", "-p", restore
            )
    finally:
        _finalize(kubectl, name)
