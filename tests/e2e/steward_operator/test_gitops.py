"""Helm 4 `--wait` on ManagedServices: the real helm4, kube-apiserver and operator.

Helm 4 replaced Helm 3's wait logic with kstatus, so `helm install --wait` waits
for custom resources too: Current (Ready=True for the observed generation) is
done, Failed (Stalled=True) is given up on at once. A user's chart of HTTP
daemons (tests/e2e/fixtures/msvc-app) is installed and upgraded with helm4
(built by hack/helm4/build-helm4.sh) while the operator runs; and the operator's
own chart renders the same with Helm 3 and Helm 4. docs/gitops.md has the
mapping these tests hold the operator to.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitops import BUILD_TIMEOUT, helm4_bin
from tests.support.kubectl import Runner, runner

REPO = Path(__file__).resolve().parents[3]
APP_CHART = REPO / "tests" / "e2e" / "fixtures" / "msvc-app"
OPERATOR_CHART = REPO / "charts" / "steward"
MISSING = "/nonexistent/steward-e2e/no-such-command"


# A cold Helm 4 build (first test only) takes minutes on 2 cores.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)


@pytest.fixture
def helm4(control_plane: Any, tmp_path: Path) -> Runner:
    """``helm4(*args, check=True, timeout=60)`` with the admin kubeconfig; own helm dirs."""
    binary = str(helm4_bin() / "helm4")
    env = control_plane.env()
    home = tmp_path / "helm4"
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )

    return runner(binary, env)


@pytest.fixture
def operator_watching(operator: Any, kubectl: Runner, namespace: str) -> Any:
    """The operator, once it is watching: it has written the status of an inactive canary.

    A user installs charts into a cluster whose operator already runs; without
    this the first install would race the operator's start-up (seconds).
    """
    canary = {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": "canary"},
        "spec": {"adminState": "inactive", "daemon": {"command": [sys.executable, "-V"]}},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(canary))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = kubectl("get", "msvc", "canary", "-n", namespace, "-o", "json").stdout
        if json.loads(out).get("status", {}).get("observedGeneration") == 1:
            kubectl("delete", "msvc", "canary", "-n", namespace, "--wait=true", timeout=60)
            return operator
        time.sleep(0.2)
    pytest.fail(f"the operator wrote no status within 60s:\n{operator.logs()[-3000:]}")


def values_file(tmp_path: Path, services: list[str | dict[str, Any]], **extra: Any) -> Path:
    """Values for msvc-app: a service is a name (an HTTP daemon) or a full entry."""
    entries = [{"name": s} if isinstance(s, str) else s for s in services]
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"python": sys.executable, "services": entries, **extra}))
    return path


def items(kubectl: Runner, namespace: str) -> dict[str, dict[str, Any]]:
    out = json.loads(kubectl("get", "msvc", "-n", namespace, "-o", "json").stdout)
    return {i["metadata"]["name"]: i for i in out["items"]}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    assert type_ in conds, (type_, obj.get("status"))
    return conds[type_]


def assert_ready_for_current_generation(obj: dict[str, Any]) -> None:
    name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
    status = obj.get("status", {})
    shown = f"{name} (generation {generation}): {json.dumps(status, indent=1)}"
    assert status.get("observedGeneration") == generation, shown
    ready = condition(obj, "Ready")
    assert ready["status"] == "True", shown
    assert ready.get("observedGeneration") == generation, shown
    assert status.get("state") == "active", shown


def http_get(uri: str) -> str:
    assert uri.startswith("http://127.0.0.1:"), uri
    with urllib.request.urlopen(uri + "/", timeout=5) as resp:
        return resp.read().decode(errors="replace")


def helm4_wait(
    helm4: Runner, verb: str, namespace: str, values: Path, timeout: int = 120, check: bool = True
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`helm4 install|upgrade app msvc-app --wait --debug`: the result and how long it took."""
    start = time.monotonic()
    proc = helm4(
        verb, "app", APP_CHART, "-n", namespace, "-f", values,
        "--wait", "--timeout", f"{timeout}s", "--debug",
        check=check, timeout=timeout + 60,
    )  # fmt: skip
    return proc, time.monotonic() - start


def assert_all_ready(
    found: dict[str, dict[str, Any]], proc: subprocess.CompletedProcess[str], took: float
) -> None:
    """Every ManagedService Ready for its generation, serving; else show helm's wait log."""
    for obj in found.values():
        try:
            assert_ready_for_current_generation(obj)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nhelm4 {proc.args[1]} --wait returned after {took:.1f}s:\n{proc.stderr}"
            ) from None


def test_install_wait_returns_once_every_service_is_ready(
    operator_watching: Any, kubectl: Runner, helm4: Runner, namespace: str, tmp_path: Path
) -> None:
    names = ["web-a", "web-b", "web-c"]
    proc, took = helm4_wait(helm4, "install", namespace, values_file(tmp_path, names))
    found = items(kubectl, namespace)  # read right after helm returned
    assert set(found) == set(names)
    assert_all_ready(found, proc, took)
    for obj in found.values():
        http_get(obj["status"]["endpoint"]["uri"])
    print(f"helm4 install --wait of {len(names)} ManagedServices took {took:.1f}s")


def test_install_wait_fails_fast_on_a_stalled_service(
    operator_watching: Any, kubectl: Runner, helm4: Runner, namespace: str, tmp_path: Path
) -> None:
    broken = {"name": "broken", "command": [MISSING], "restartPolicy": "Never"}
    values = values_file(tmp_path, ["web-a", broken])
    timeout = 180
    proc, took = helm4_wait(helm4, "install", namespace, values, timeout=timeout, check=False)
    assert proc.returncode != 0, f"helm4 install --wait succeeded:\n{proc.stderr}"
    # Failed is terminal for Helm 4's waiter: it gives up once the rest is Current.
    assert took < timeout / 3, f"helm4 took {took:.1f}s: it ran into --timeout\n{proc.stderr}"
    error = next(line for line in proc.stderr.splitlines() if line.startswith("Error:"))
    assert "ManagedService" in error and "/broken not ready. status: Failed" in error, error
    assert MISSING in error, error  # the Stalled message says what is wrong
    found = items(kubectl, namespace)
    assert condition(found["broken"], "Stalled")["status"] == "True", found["broken"]["status"]
    assert condition(found["broken"], "Ready")["status"] == "False"
    assert_all_ready({"web-a": found["web-a"]}, proc, took)
    print(f"helm4 install --wait gave up on the Stalled service after {took:.1f}s:\n{error}")


def test_upgrade_wait_waits_for_the_new_generation(
    operator_watching: Any, kubectl: Runner, helm4: Runner, namespace: str, tmp_path: Path
) -> None:
    names = ["web-a", "web-b"]
    proc, took = helm4_wait(helm4, "install", namespace, values_file(tmp_path, names))
    before = items(kubectl, namespace)
    assert_all_ready(before, proc, took)

    # The new spec serves a directory holding a marker file: a listing that shows
    # it comes from the new generation's process.
    served = tmp_path / "served"
    served.mkdir()
    marker = f"marker-{uuid.uuid4().hex[:8]}.txt"
    (served / marker).write_text("new generation\n")
    values = values_file(tmp_path, names, extraArgs=["--directory", str(served)])
    proc, took = helm4_wait(helm4, "upgrade", namespace, values)
    after = items(kubectl, namespace)  # read right after helm returned
    for name, obj in after.items():
        assert obj["metadata"]["generation"] > before[name]["metadata"]["generation"], name
    assert_all_ready(after, proc, took)
    for name, obj in after.items():
        assert marker in http_get(obj["status"]["endpoint"]["uri"]), name
    print(f"helm4 upgrade --wait took {took:.1f}s")


# ------------------------------------------------ the operator's own chart, Helm 3 and Helm 4


VALUE_SETS = [
    [],
    ["--set", "watchNamespaces={team-a,team-b}"],
    ["--set", "replicas=2", "--set", "metrics.service.enabled=true"],
    ["--set", "docker.mode=dind", "--set", "persistence.enabled=true"],
]


def render(run: Runner, *args: str) -> list[dict[str, Any]]:
    out = run("template", "steward", OPERATOR_CHART, "-n", "steward-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def identity(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


@pytest.mark.parametrize("args", VALUE_SETS, ids=lambda a: " ".join(a) or "defaults")
def test_operator_chart_renders_the_same_with_helm3_and_helm4(
    helm: Runner, helm4: Runner, args: list[str]
) -> None:
    helm3_docs, helm4_docs = render(helm, *args), render(helm4, *args)
    assert helm4_docs, "helm4 template rendered nothing"
    assert sorted(helm3_docs, key=identity) == sorted(helm4_docs, key=identity)


def test_operator_chart_lints_and_packages_with_helm4(helm4: Runner, tmp_path: Path) -> None:
    helm4("lint", "--strict", OPERATOR_CHART)
    with_crds = helm4("template", "steward", OPERATOR_CHART, "--include-crds").stdout
    assert "name: managedservices.steward.dev" in with_crds
    # The packaged chart carries the Argo CD health script (charts/steward/health/).
    helm4("package", OPERATOR_CHART, "-d", tmp_path)
    (archive,) = tmp_path.glob("steward-*.tgz")
    with tarfile.open(archive) as tar:
        packaged = tar.extractfile("steward/health/managedservice.lua")
        assert packaged is not None
        assert packaged.read() == (OPERATOR_CHART / "health" / "managedservice.lua").read_bytes()
