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
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import gitops
from tests.support.gitops import HealthCase as Case
from tests.support.paths import REPO

# The first test builds the tools when they are not cached (minutes on 2 busy cores).
pytestmark = pytest.mark.timeout(gitops.BUILD_TIMEOUT)

# The statuses, and each tool's verdict on them: tests/data/gitops/health-cases.yaml.
CASES = gitops.health_cases()


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return gitops.gitops_bin()


def case_obj(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(c.obj for c in CASES if c.name == name))


@pytest.fixture(scope="module")
def verdicts(bin_dir: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Both tools run once on every case (one process each for the whole list)."""
    objs = [c.obj for c in CASES]
    argo = gitops.argo_health(bin_dir, objs)
    kst = gitops.kstatus(bin_dir, objs)
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
    out = gitops.flux_cel(
        bin_dir,
        gitops.example_flux_exprs(),
        [c.obj for c in CASES],
        tmp_path_factory.mktemp("flux"),
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
    shown = gitops.docs_flux_exprs()
    assert shown, "docs/gitops.md shows no Flux Kustomization with healthCheckExprs"
    example = gitops.example_flux_exprs()
    assert all(s == example for s in shown), "docs/gitops.md and examples/ disagree"


def test_kstatus_is_never_current_for_a_stale_generation(bin_dir: Path) -> None:
    for case in CASES:
        stale = copy.deepcopy(case.obj)
        if "status" not in stale:
            continue
        stale["metadata"]["generation"] = stale["status"]["observedGeneration"] + 1
        assert gitops.kstatus(bin_dir, stale)["status"] == "InProgress", case.name
        assert gitops.argo_health(bin_dir, stale)["status"] == "Progressing", case.name


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
    assert gitops.kstatus(bin_dir, obj)["status"] == "Terminating"


# ------------------------------------------------ the harness behaves like Argo CD's VM


def test_harness_opens_no_string_library(bin_dir: Path, tmp_path: Path) -> None:
    """Argo CD runs argocd-cm scripts without Lua's string library; so does argo-health."""
    script = tmp_path / "uses-string.lua"
    script.write_text('return {status = string.upper("healthy")}\n')
    out = gitops.run_tool(gitops.argo_health_argv(bin_dir, script), case_obj("no-status-yet"))
    assert out.returncode == 1
    assert "string" in out.stdout


def test_harness_maps_an_invalid_status_to_unknown(bin_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "bogus.lua"
    script.write_text('return {status = "Fine", message = obj.metadata.name}\n')
    assert gitops.argo_health(bin_dir, case_obj("no-status-yet"), script) == {
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
    assert gitops.argo_health(bin_dir, case_obj("starting"), script) == {
        "status": "Healthy",
        "message": "3",
    }


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
    shipped = gitops.HEALTH_LUA.read_text()
    docs = gitops.GITOPS_DOC.read_text()
    assert indented_block_after(docs, KEY) == shipped, (
        "the argocd-cm snippet in docs/gitops.md differs from charts/steward/health/managedservice.lua"
    )


def test_chart_readme_shows_the_argocd_cm_snippet() -> None:
    readme = (REPO / "charts" / "steward" / "README.md").read_text()
    assert "health/managedservice.lua" in readme
    assert KEY in readme
