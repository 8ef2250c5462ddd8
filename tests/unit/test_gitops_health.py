"""What Argo CD and kstatus (Flux, Helm 4 --wait) make of a ManagedService's status.

Every state the operator writes (the status contract: observedGeneration, state,
Ready / Reconciling / Stalled conditions each with observedGeneration) is put
through both real programs: ``argo-health`` runs the Lua script shipped in
charts/steward/health/ in gopher-lua the way Argo CD does, and ``kstatus`` runs
sigs.k8s.io/cli-utils ``status.Compute``. Both are built from hack/gitops/ by
its build script (cached); without Go they skip, under CI=true they fail.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitops import (
    BUILD_TIMEOUT,
    HEALTH_LUA,
    argo_health,
    docs_flux_exprs,
    example_flux_exprs,
    flux_cel,
    gitops_bin,
    kstatus,
)
from tests.support.paths import REPO

# The first test builds the tools when they are not cached (minutes on 2 busy cores).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)

GEN = 3


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return gitops_bin()


def cond(
    type_: str, status: str, reason: str, message: str = "", generation: int = GEN
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    }


def msvc(
    *,
    generation: int = GEN,
    status: dict[str, Any] | None = None,
    admin_state: str = "active",
    restart_policy: str = "Always",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "generation": generation,
            "uid": "0b8f6c3e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "adminState": admin_state,
            "daemon": {"command": ["python3", "-m", "http.server", "$(PORT)"]},
            "endpoint": {"protocol": "http", "healthCheck": {"http": {"path": "/"}}},
            "restartPolicy": restart_policy,
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def status(
    state: str,
    ready: dict[str, Any],
    reconciling: dict[str, Any],
    stalled: dict[str, Any],
    observed: int = GEN,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "state": state,
        "observedGeneration": observed,
        "flavor": "daemon",
        "conditions": [ready, reconciling, stalled],
        **extra,
    }


URI = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class Case:
    name: str
    obj: dict[str, Any]
    argo: str  # Argo CD health status
    kstatus: str  # kstatus status
    argo_message: str = ""  # a regex the Argo CD message must match
    # Flux with examples/flux-kustomization.yaml's healthCheckExprs; "error": the
    # expressions cannot be evaluated yet, and Flux keeps waiting.
    flux: str = ""


CASES = [
    Case(
        "no-status-yet",
        msvc(generation=1),
        "Progressing",
        # kstatus' documented fallback: no conditions at all means Current. The
        # apiserver drops status on create, so this is what tools see until the
        # operator's first status write (see docs/gitops.md).
        "Current",
        "observe",
        flux="error",
    ),
    Case(
        # What every read shows before the first status write if the CRD
        # defaults status to {observedGeneration: 0} (a structural-schema
        # default, applied on every read and watch event): no tool calls that done.
        "status-defaulted-observed-generation-0",
        msvc(generation=1, status={"observedGeneration": 0}),
        "Progressing",
        "InProgress",
        r"generation 1 \(observed: 0\)",
        flux="InProgress",
    ),
    Case(
        "starting",
        msvc(
            status=status(
                "pending_startup",
                cond("Ready", "False", "Starting", "waiting for the service to start"),
                cond("Reconciling", "True", "Starting", "starting daemon"),
                cond("Stalled", "False", "Starting"),
            )
        ),
        "Progressing",
        "InProgress",
        "Starting",
        flux="InProgress",
    ),
    Case(
        "ready",
        msvc(
            status=status(
                "active",
                cond("Ready", "True", "Running", "service is running and healthy"),
                cond("Reconciling", "False", "Running"),
                cond("Stalled", "False", "Running"),
                endpoint={"uri": URI, "port": 8765},
                health={"state": "healthy"},
            )
        ),
        "Healthy",
        "Current",
        re.escape(URI),
        flux="Current",
    ),
    Case(
        "stale-generation-ready-true",
        msvc(
            generation=GEN + 1,
            status=status(
                "active",
                cond("Ready", "True", "Running", "service is running and healthy"),
                cond("Reconciling", "False", "Running"),
                cond("Stalled", "False", "Running"),
            ),
        ),
        "Progressing",
        "InProgress",
        f"generation {GEN + 1}",
        flux="InProgress",
    ),
    Case(
        "ready-condition-from-older-generation",
        msvc(
            status=status(
                "active",
                cond("Ready", "True", "Running", "ok", generation=GEN - 1),
                cond("Reconciling", "False", "Running", generation=GEN - 1),
                cond("Stalled", "False", "Running", generation=GEN - 1),
            )
        ),
        "Progressing",
        # kstatus compares only status.observedGeneration, not the conditions'.
        "Current",
        flux="InProgress",
    ),
    Case(
        "crash-loop-back-off",
        msvc(
            status=status(
                "error",
                cond("Ready", "False", "CrashLoopBackOff", "exited with code 1; back-off 20s"),
                cond("Reconciling", "True", "BackOff", "restarting in 20s"),
                cond("Stalled", "False", "BackOff"),
                restarts=2,
                lastExitCode=1,
                nextRestartAt="2026-01-01T00:00:20Z",
            )
        ),
        "Progressing",
        "InProgress",
        "BackOff.*CrashLoopBackOff",
        flux="InProgress",
    ),
    Case(
        "image-pull-back-off",
        msvc(
            status=status(
                "pending_startup",
                cond("Ready", "False", "ImagePullBackOff", "pulling image web:1 failed"),
                cond("Reconciling", "True", "BackOff", "retrying in 10s"),
                cond("Stalled", "False", "BackOff"),
            )
        ),
        "Progressing",
        "InProgress",
        "ImagePullBackOff",
        flux="InProgress",
    ),
    Case(
        "stalled-never-command-not-found",
        msvc(
            restart_policy="Never",
            status=status(
                "error",
                cond("Ready", "False", "CommandNotFound", "no such executable: /nope/serve"),
                cond("Reconciling", "False", "Failed"),
                cond("Stalled", "True", "CommandNotFound", "no retry: restartPolicy is Never"),
                lastError="no such executable: /nope/serve",
            ),
        ),
        "Degraded",
        "Failed",
        "^CommandNotFound: no such executable: /nope/serve$",
        flux="Failed",
    ),
    Case(
        "invalid-spec",
        msvc(
            status=status(
                "error",
                cond("Ready", "False", "InvalidSpec", "spec.endpoint.port: must be <= 65535"),
                cond("Reconciling", "False", "InvalidSpec"),
                cond("Stalled", "True", "InvalidSpec", "spec.endpoint.port: must be <= 65535"),
            )
        ),
        "Degraded",
        "Failed",
        "^InvalidSpec: spec.endpoint.port",
        flux="Failed",
    ),
    Case(
        "policy-denied",
        msvc(
            status=status(
                "inactive",
                cond("Ready", "False", "PolicyDenied", "daemons are not allowed in team-a"),
                cond("Reconciling", "False", "PolicyDenied"),
                cond("Stalled", "True", "PolicyDenied", "daemons are not allowed in team-a"),
            )
        ),
        "Degraded",
        "Failed",
        "^PolicyDenied: daemons are not allowed",
        flux="Failed",
    ),
    Case(
        "admin-state-inactive",
        msvc(
            admin_state="inactive",
            status=status(
                "inactive",
                cond("Ready", "False", "Stopped", "adminState is inactive"),
                cond("Reconciling", "False", "Stopped"),
                cond("Stalled", "False", "Stopped"),
            ),
        ),
        "Suspended",
        # kstatus has no Suspended: Ready=False reads as InProgress, so
        # `helm install --wait` never returns for a stopped service.
        "InProgress",
        "inactive",
        flux="Current",
    ),
    Case(
        "stopping",
        msvc(
            admin_state="inactive",
            status=status(
                "pending_shutdown",
                cond("Ready", "False", "Stopped", "stopping"),
                cond("Reconciling", "True", "Stopping", "SIGTERM sent"),
                cond("Stalled", "False", "Stopping"),
            ),
        ),
        "Progressing",
        "InProgress",
        "Stopping",
        flux="InProgress",
    ),
    Case(
        "running-but-unhealthy",
        msvc(
            status=status(
                "active",
                cond("Ready", "False", "Unhealthy", "GET / returned 500 (3 failures)"),
                cond("Reconciling", "False", "Running"),
                cond("Stalled", "False", "Running"),
            )
        ),
        "Degraded",
        "InProgress",
        "Unhealthy: GET / returned 500",
        flux="InProgress",
    ),
    Case(
        "completed-no-retry",
        msvc(
            restart_policy="OnFailure",
            status=status(
                "inactive",
                cond("Ready", "False", "Completed", "exited with code 0"),
                cond("Reconciling", "False", "Completed"),
                cond("Stalled", "False", "Completed"),
            ),
        ),
        "Healthy",
        # kstatus: Ready=False is InProgress, for ever.
        "InProgress",
        "^Completed: exited with code 0$",
        flux="InProgress",
    ),
    Case(
        # An operator older than the Reconciling/Stalled contract: state error,
        # no restart scheduled.
        "error-without-stalled-no-retry",
        msvc(
            restart_policy="Never",
            status={
                "state": "error",
                "observedGeneration": GEN,
                "lastError": "exited with code 2",
                "conditions": [cond("Ready", "False", "Failed", "exited with code 2")],
            },
        ),
        "Degraded",
        "InProgress",
        "exited with code 2",
        flux="InProgress",
    ),
    Case(
        "error-without-stalled-retry-scheduled",
        msvc(
            status={
                "state": "error",
                "observedGeneration": GEN,
                "nextRestartAt": "2026-01-01T00:00:20Z",
                "conditions": [cond("Ready", "False", "CrashLoopBackOff", "exited with code 1")],
            },
        ),
        "Progressing",
        "InProgress",
        "Restart scheduled",
        flux="InProgress",
    ),
]


def case_obj(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(c.obj for c in CASES if c.name == name))


@pytest.fixture(scope="module")
def verdicts(bin_dir: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Both tools run once on every case (one process each for the whole list)."""
    objs = [c.obj for c in CASES]
    argo = argo_health(bin_dir, objs)
    kst = kstatus(bin_dir, objs)
    assert len(argo) == len(kst) == len(CASES)
    return {c.name: (a, k) for c, a, k in zip(CASES, argo, kst, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_argo_cd_health(case: Case, verdicts: dict[str, Any]) -> None:
    argo, _ = verdicts[case.name]
    assert "error" not in argo, argo
    assert argo["status"] == case.argo, argo
    assert re.search(case.argo_message, argo.get("message", "")), argo


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kstatus(case: Case, verdicts: dict[str, Any]) -> None:
    _, kst = verdicts[case.name]
    assert "error" not in kst, kst
    assert kst["status"] == case.kstatus, kst


@pytest.fixture(scope="module")
def flux_verdicts(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = flux_cel(
        bin_dir, example_flux_exprs(), [c.obj for c in CASES], tmp_path_factory.mktemp("flux")
    )
    return {c.name: v for c, v in zip(CASES, out, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_flux_health_check_exprs(case: Case, flux_verdicts: dict[str, Any]) -> None:
    verdict = flux_verdicts[case.name]
    if case.flux == "error":
        assert "error" in verdict and "status" not in verdict, verdict
    else:
        assert verdict == {"status": case.flux}, verdict


def test_docs_show_the_example_flux_health_check_exprs() -> None:
    shown = docs_flux_exprs()
    assert shown, "docs/gitops.md shows no Flux Kustomization with healthCheckExprs"
    example = example_flux_exprs()
    assert all(s == example for s in shown), "docs/gitops.md and examples/ disagree"


def test_kstatus_is_never_current_for_a_stale_generation(bin_dir: Path) -> None:
    for case in CASES:
        stale = copy.deepcopy(case.obj)
        if "status" not in stale:
            continue
        stale["metadata"]["generation"] = stale["status"]["observedGeneration"] + 1
        assert kstatus(bin_dir, stale)["status"] == "InProgress", case.name
        assert argo_health(bin_dir, stale)["status"] == "Progressing", case.name


def test_degraded_messages_carry_the_ready_message(verdicts: dict[str, Any]) -> None:
    for case in CASES:
        argo, _ = verdicts[case.name]
        if argo["status"] != "Degraded":
            continue
        ready = next(
            (c for c in case.obj["status"]["conditions"] if c["type"] == "Ready"), {"message": ""}
        )
        assert ready["message"] in argo["message"], (case.name, argo)


def test_deletion_is_terminating_for_kstatus(bin_dir: Path) -> None:
    obj = case_obj("ready")
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    assert kstatus(bin_dir, obj)["status"] == "Terminating"


# ------------------------------------------------ the harness behaves like Argo CD's VM


def test_harness_opens_no_string_library(bin_dir: Path, tmp_path: Path) -> None:
    """Argo CD runs argocd-cm scripts without Lua's string library; so does argo-health."""
    script = tmp_path / "uses-string.lua"
    script.write_text('return {status = string.upper("healthy")}\n')
    out = subprocess_result(bin_dir, script, case_obj("no-status-yet"))
    assert out.returncode == 1
    assert "string" in out.stdout


def test_harness_maps_an_invalid_status_to_unknown(bin_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "bogus.lua"
    script.write_text('return {status = "Fine", message = obj.metadata.name}\n')
    assert argo_health(bin_dir, case_obj("no-status-yet"), script) == {
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }


def test_harness_decodes_integers_as_numbers(bin_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "gen.lua"
    script.write_text(
        'if obj.metadata.generation == 3 and obj.spec.restartPolicy == "Always" then\n'
        '  return {status = "Healthy", message = tostring(obj.metadata.generation)}\n'
        "end\n"
        'return {status = "Degraded"}\n'
    )
    assert argo_health(bin_dir, case_obj("starting"), script) == {
        "status": "Healthy",
        "message": "3",
    }


def subprocess_result(
    bin_dir: Path, script: Path, obj: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "argo-health"), str(script)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ------------------------------------------------ the shipped copies agree


def indented_block_after(markdown: str, key: str) -> str:
    """The YAML block scalar that follows ``key: |`` in a markdown file, de-indented."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}: |")
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    body = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(" " * indent):
            break
        body.append(line[indent:])
    return "\n".join(body).rstrip("\n") + "\n"


KEY = "resource.customizations.health.steward.dev_ManagedService"


def test_docs_show_the_shipped_script() -> None:
    shipped = HEALTH_LUA.read_text()
    docs = (REPO / "docs" / "gitops.md").read_text()
    assert indented_block_after(docs, KEY) == shipped, (
        "the argocd-cm snippet in docs/gitops.md differs from charts/steward/health/managedservice.lua"
    )


def test_chart_readme_shows_the_argocd_cm_snippet() -> None:
    readme = (REPO / "charts" / "steward" / "README.md").read_text()
    assert "health/managedservice.lua" in readme
    assert KEY in readme
