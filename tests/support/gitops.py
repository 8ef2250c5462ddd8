"""The GitOps health tools the tests run: Argo CD's Lua health check, kstatus, Helm 4.

All are built from Go modules by their scripts (cached under $STEWARD_CACHE):

* ``hack/gitops/build.sh``: ``argo-health`` (the shipped Lua script in gopher-lua,
  the way Argo CD runs argocd-cm health scripts), ``kstatus`` (cli-utils
  ``status.Compute``, as Flux and Helm 4 use it) and ``flux-cel`` (a Flux
  Kustomization's ``healthCheckExprs`` in cel-go, as kustomize-controller
  evaluates them);
* ``hack/helm4/build-helm4.sh``: ``helm4`` (helm.sh/helm/v4/cmd/helm).

$STEWARD_GITOPS_BIN / $STEWARD_HELM4_BIN name prebuilt bin directories instead.
Without a Go toolchain, or when a build fails, the tests skip with the reason;
under CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.env import in_ci
from tests.support.paths import DATA, REPO

HEALTH_LUA = REPO / "charts" / "steward" / "health" / "managedservice.lua"
GITOPS_BUILD = REPO / "hack" / "gitops" / "build.sh"
HELM4_BUILD = REPO / "hack" / "helm4" / "build-helm4.sh"
GITOPS_DOC = REPO / "docs" / "gitops.md"
FLUX_EXAMPLE = REPO / "examples" / "flux-kustomization.yaml"
BUILD_TIMEOUT = 3600  # a cold Helm 4 build on 2 busy cores takes minutes


class ToolUnavailable(RuntimeError):
    pass


def _go_available() -> bool:
    return bool(os.environ.get("GO") or shutil.which("go") or Path("/usr/local/go/bin/go").exists())


@cache
def _build(script: Path, env_var: str, binaries: tuple[str, ...]) -> Path | str:
    """The bin dir, or why there is none (cached either way: one build per session)."""
    try:
        return _build_once(script, env_var, binaries)
    except ToolUnavailable as exc:
        return str(exc)


def _build_once(script: Path, env_var: str, binaries: tuple[str, ...]) -> Path:
    prebuilt = os.environ.get(env_var, "").strip()
    if prebuilt:
        bin_dir = Path(prebuilt)
    else:
        if not _go_available():
            raise ToolUnavailable(f"no Go toolchain to run {script.relative_to(REPO)}")
        try:
            proc = subprocess.run(
                ["bash", str(script)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolUnavailable(f"{script.name} took more than {BUILD_TIMEOUT}s") from exc
        if proc.returncode != 0:
            raise ToolUnavailable(
                f"{script.relative_to(REPO)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
            )
        bin_dir = Path(proc.stdout.strip())
    missing = [b for b in binaries if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ToolUnavailable(f"{bin_dir} lacks {', '.join(missing)}")
    return bin_dir


def _require(script: Path, env_var: str, binaries: tuple[str, ...]) -> Path:
    found = _build(script, env_var, binaries)
    if isinstance(found, Path):
        return found
    message = f"GitOps tool unavailable: {found}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def gitops_bin() -> Path:
    """The bin dir with argo-health, kstatus, flux-cel (built or reused); skip/fail if impossible."""
    return _require(GITOPS_BUILD, "STEWARD_GITOPS_BIN", ("argo-health", "kstatus", "flux-cel"))


def helm4_bin() -> Path:
    """The bin dir with helm4 (built or reused); skip/fail if impossible."""
    return _require(HELM4_BUILD, "STEWARD_HELM4_BIN", ("helm4",))


def run_tool(argv: list[str], objects: Any) -> subprocess.CompletedProcess[str]:
    """One of the tools on OBJECTS (JSON on stdin), whatever its exit."""
    return subprocess.run(
        argv, input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=False
    )


def _run_json(argv: list[str], objects: Any) -> Any:
    proc = run_tool(argv, objects)
    if proc.returncode != 0:
        raise AssertionError(f"{argv} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


def argo_health_argv(bin_dir: Path, script: Path = HEALTH_LUA) -> list[str]:
    return [str(bin_dir / "argo-health"), str(script)]


def argo_health(bin_dir: Path, objects: Any, script: Path = HEALTH_LUA) -> Any:
    """Argo CD's verdict(s) ({status, message}) for one object or a list of them."""
    return _run_json(argo_health_argv(bin_dir, script), objects)


def kstatus(bin_dir: Path, objects: Any) -> Any:
    """kstatus' verdict(s) ({status, message, conditions}) for one object or a list of them."""
    return _run_json([str(bin_dir / "kstatus")], objects)


def flux_cel(bin_dir: Path, exprs: dict[str, str], objects: Any, tmp_dir: Path) -> Any:
    """Flux's verdict(s) ({status} or {error}) under one ``healthCheckExprs`` entry."""
    path = tmp_dir / "exprs.json"
    path.write_text(json.dumps(exprs))
    return _run_json([str(bin_dir / "flux-cel"), str(path)], objects)


def flux_exprs(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The ManagedService ``healthCheckExprs`` entry of the one Kustomization in DOCS."""
    (kustomization,) = [d for d in docs if d and d["kind"] == "Kustomization"]
    (entry,) = [
        e
        for e in kustomization["spec"]["healthCheckExprs"]
        if (e["apiVersion"], e["kind"]) == ("steward.dev/v1alpha1", "ManagedService")
    ]
    return {k: v for k, v in entry.items() if k in ("current", "failed", "inProgress")}


def example_flux_exprs() -> dict[str, str]:
    """The expressions of examples/flux-kustomization.yaml."""
    return flux_exprs(list(yaml.safe_load_all(FLUX_EXAMPLE.read_text())))


def docs_flux_exprs() -> list[dict[str, str]]:
    """The expressions of every Kustomization (with healthCheckExprs) docs/gitops.md shows."""
    blocks = re.findall(r"```yaml\n(.*?)```", GITOPS_DOC.read_text(), flags=re.DOTALL)
    return [
        flux_exprs(list(yaml.safe_load_all(b)))
        for b in blocks
        if "kind: Kustomization" in b and "healthCheckExprs" in b
    ]


# ------------------------------------------------ the hand-written cases (tests/data/gitops)

HEALTH_CASES = DATA / "gitops" / "health-cases.yaml"
GEN = 3  # the base object's generation and each condition's default observedGeneration
TRANSITION = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class HealthCase:
    """One status the operator writes, and what each tool must make of it."""

    name: str
    obj: dict[str, Any]
    argo: str  # Argo CD health status
    kstatus: str  # kstatus status
    argo_message: str = ""  # a regex the Argo CD message must match
    # Flux with examples/flux-kustomization.yaml's healthCheckExprs; "error": the
    # expressions cannot be evaluated yet, and Flux keeps waiting.
    flux: str = ""


def base_msvc() -> dict[str, Any]:
    """The ManagedService every case starts from: an active HTTP daemon, no status."""
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "generation": GEN,
            "uid": "0b8f6c3e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "adminState": "active",
            "daemon": {"command": ["python3", "-m", "http.server", "$(PORT)"]},
            "endpoint": {"protocol": "http", "healthCheck": {"http": {"path": "/"}}},
            "restartPolicy": "Always",
        },
    }


def case_object(change: dict[str, Any]) -> dict[str, Any]:
    """The base object with a case's metadata and spec fields over its own, and its status;
    each condition gets lastTransitionTime, an empty message and observedGeneration GEN
    unless it says otherwise."""
    obj = base_msvc()
    for part in ("metadata", "spec"):
        obj[part].update(change.get(part) or {})
    if "status" in change:
        obj["status"] = status = copy.deepcopy(change["status"])
        if "conditions" in status:
            defaults = {"message": "", "lastTransitionTime": TRANSITION, "observedGeneration": GEN}
            status["conditions"] = [{**defaults, **c} for c in status["conditions"]]
    return obj


def health_cases() -> list[HealthCase]:
    """The cases of tests/data/gitops/health-cases.yaml, in order."""
    return [
        HealthCase(
            name=c["name"],
            obj=case_object(c["object"]),
            argo=c["argo"],
            kstatus=c["kstatus"],
            argo_message=c.get("argoMessage", ""),
            flux=c.get("flux", ""),
        )
        for c in yaml.safe_load(HEALTH_CASES.read_text())
    ]
