"""Helm on the real kubelet node: the chart, the operator pod and its processes seen from the host.

Shared by tests/e2e/node/: helm and shell lines run as the README shows them,
ManagedService waits, the operator pod's pids/argv/environ/RSS from /proc and its
cgroup, and the namespaces, containers and finalizers the tests clean up.
"""

from __future__ import annotations

import contextlib
import glob
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.testenv import cluster

from tests.support.env import unavailable
from tests.support.kubectl import Runner
from tests.support.node import NodeSession
from tests.support.paths import REPO as REPO_ROOT

CHART = REPO_ROOT / "charts" / "steward"
EXAMPLES = REPO_ROOT / "examples"
README = REPO_ROOT / "README.md"
FINALIZER = "steward.dev/finalizer"
DAEMON_EXAMPLES = ("http-daemon", "python-callable", "env-from-secret")
# Quickstart examples that cannot run in-cluster: none. web-container needs the
# container flavor (its own test); argocd-application / flux-kustomization are
# not ManagedServices.
NOT_MANAGED_SERVICES = ("argocd-application.yaml", "flux-kustomization.yaml")


def need_operator(session: NodeSession) -> None:
    if session.operator_image is None:
        unavailable(f"operator image unavailable: {session.operator_error}")


def sh(
    session: NodeSession, line: str, timeout: float = 240, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """A shell line as a user types it, in the repository, against the node cluster."""
    try:
        proc = subprocess.run(
            ["bash", "-c", line],
            cwd=REPO_ROOT,
            env=session.info.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout}s: {line}", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {line}\n--- stdout ---\n{proc.stdout}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def helm(session: NodeSession, *args: str, timeout: float = 200, check: bool = True) -> str:
    helm = str(session.info.control_plane.bin_dir / "helm")
    proc = subprocess.run(
        [helm, *args],
        env=session.info.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)}: {proc.stdout}{proc.stderr}", pytrace=False)
    return proc.stdout


def _sets(values: tuple[str, ...]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def install(session: NodeSession, release: str, namespace: str, *values: str) -> str:
    """``helm install RELEASE charts/steward -n NAMESPACE --wait --timeout 150s`` with a
    ``--set`` for each of ``values``."""
    args = ["install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "150s"]
    return helm(session, *args, *_sets(values))


def upgrade(session: NodeSession, release: str, namespace: str, *values: str) -> str:
    """``helm upgrade RELEASE charts/steward -n NAMESPACE --reuse-values --wait --timeout
    150s`` with a ``--set`` for each of ``values``."""
    args = ["upgrade", release, str(CHART), "-n", namespace, "--reuse-values", "--wait"]
    return helm(session, *args, "--timeout", "150s", *_sets(values))


def uninstall(session: NodeSession, release: str, namespace: str) -> None:
    """``helm uninstall --wait`` of a test's release; cleanup, so a failure is not fatal."""
    helm(session, "uninstall", release, "-n", namespace, "--wait", "--timeout", "90s", check=False)


def quickstart_lines() -> list[str]:
    """The first ```bash block of README.md's "On a cluster" section."""
    text = README.read_text()
    section = text[text.index("## On a cluster") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in README's On a cluster section"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def readme_line(startswith: str) -> str:
    """The one line of README.md's "On a cluster" section starting with ``startswith``."""
    text = README.read_text()
    section = text[text.index("## On a cluster") : text.index("## Command line")]
    found = [ln.strip() for ln in section.splitlines() if ln.strip().startswith(startswith)]
    assert len(found) == 1, (startswith, found)
    return found[0]


def msvcs(kubectl: Runner, ns: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("get", "managedservices", "-n", ns, "-o", "json").stdout)["items"]
    return {m["metadata"]["name"]: m for m in items}


def ready(msvc: dict[str, Any]) -> bool:
    conds = (msvc.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def all_ready(kubectl: Runner, ns: str) -> bool:
    return all(ready(m) for m in msvcs(kubectl, ns).values())


def operator_pod(kubectl: Runner, ns: str, release: str) -> dict[str, Any]:
    pods = json.loads(
        kubectl(
            "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
        ).stdout
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return live[0]


def pod_cgroup(uid: str) -> Path:
    found = glob.glob(f"/sys/fs/cgroup/memory/kubepods/**/pod{uid}", recursive=True)
    found += glob.glob(f"/sys/fs/cgroup/kubepods*/**/pod{uid}", recursive=True)
    assert found, f"no cgroup for pod {uid}"
    return Path(found[0])


def pod_pids(uid: str) -> list[int]:
    return cluster.cgroup_procs(pod_cgroup(uid))


def argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.decode(errors="replace").partition("=")
        if sep:
            out[k] = v
    return out


def operator_pid(uid: str) -> int:
    pids = [
        p
        for p in pod_pids(uid)
        if any(a.endswith("/steward") for a in argv(p)) and "run" in argv(p)
    ]
    assert len(pids) == 1, {p: argv(p) for p in pod_pids(uid)}
    return pids[0]


def launch_ids(uid: str) -> dict[int, str]:
    """pid -> STEWARD_LAUNCH_ID for each daemon process in the pod."""
    out = {}
    for pid in pod_pids(uid):
        launch = environ(pid).get("STEWARD_LAUNCH_ID")
        if launch:
            out[pid] = launch
    return out


def processes_with_launch_id(launch: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and environ(int(entry.name)).get("STEWARD_LAUNCH_ID") == launch:
            out.append(int(entry.name))
    return out


def rss_mb(uid: str) -> tuple[float, float]:
    """(pod memory cgroup RSS, operator process VmRSS) in MB."""
    stat = dict(line.split() for line in (pod_cgroup(uid) / "memory.stat").read_text().splitlines())
    pod = int(stat.get("total_rss", stat.get("anon", 0))) / 2**20
    status = Path(f"/proc/{operator_pid(uid)}/status").read_text()
    vm = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")) / 1024
    return round(pod, 1), round(vm, 1)


def diagnose(kubectl: Runner, ns: str, release: str, msvc_ns: str | None = None) -> str:
    out = [kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout]
    out.append(kubectl("get", "events", "-n", ns, check=False).stdout[-3000:])
    logs = kubectl("logs", "-n", ns, f"deploy/{release}", "--tail=80", check=False)
    out.append(f"--- operator logs ---\n{logs.stdout[-6000:]}{logs.stderr[-1000:]}")
    if msvc_ns:
        out.append(kubectl("get", "msvc", "-n", msvc_ns, "-o", "yaml", check=False).stdout[-6000:])
    return "\n".join(out)


def wait_ready(
    kubectl: Runner,
    ns: str,
    names: list[str],
    timeout: float,
    diag: tuple[str, str],
    since: float | None = None,
) -> dict[str, float]:
    """Poll until every named ManagedService is Ready; seconds from ``since`` for each."""
    since = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    first: dict[str, float] = {}
    while time.monotonic() < deadline:
        for name, m in msvcs(kubectl, ns).items():
            if name in names and name not in first and ready(m):
                first[name] = round(time.monotonic() - since, 1)
        if len(first) == len(names):
            return first
        time.sleep(0.5)
    pytest.fail(
        f"not Ready within {timeout}s: {sorted(set(names) - set(first))} (ready: {first})\n"
        + diagnose(kubectl, diag[0], diag[1], ns),
        pytrace=False,
    )
    raise AssertionError("unreachable")


def examples(ns: str, busybox: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """examples/*.yaml as objects in namespace ``ns`` (ManagedService files only)."""
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not any(d.get("kind") == "ManagedService" for d in docs):
            assert path.name in NOT_MANAGED_SERVICES, path
            continue
        for d in docs:
            d["metadata"]["namespace"] = ns
            container = d.get("spec", {}).get("container")
            if container and busybox:
                # No registry here: the locally built busybox stands in for busybox:1.36.
                container["image"] = busybox
        out[path.stem] = docs
    return out


def apply(kubectl: Runner, *objs: dict[str, Any]) -> None:
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    )


def strip_finalizers(kubectl: Runner, ns: str) -> None:
    proc = kubectl("get", "managedservices", "-n", ns, "-o", "name", check=False)
    for name in proc.stdout.split():
        kubectl(
            "patch",
            "-n",
            ns,
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=check
    )


def docker_busybox() -> str | None:
    if shutil.which("docker") is None or docker("info").returncode != 0:
        return None
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return next((i for i in out if i.startswith("steward-test/busybox:")), None)


def remove_containers(ns: str) -> None:
    """Docker containers a ManagedService of namespace ``ns`` left, by id."""
    ids = docker("ps", "-aq", "--filter", "label=steward.dev/managed=true").stdout.split()
    for cid in ids:
        label = docker(
            "inspect", "-f", '{{index .Config.Labels "steward.dev/service"}}', cid
        ).stdout.strip()
        if label.startswith(f"{ns}/"):
            docker("rm", "-f", cid)


def http_from_pod(
    kubectl: Runner, ns: str, image: str, name: str, host: str, port: int, path: str
) -> str:
    """GET http://host:port/path from a busybox pod (nc: busybox-static's wget segfaults)."""
    script = (
        "for i in $(seq 1 30); do "
        f"out=$(printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}) && "
        'case $out in *"200 OK"*) echo "$out"; exit 0;; esac; sleep 1; done; exit 1'
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }
    apply(kubectl, pod)
    deadline = time.monotonic() + 90
    phase = ""
    while time.monotonic() < deadline:
        got = json.loads(kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)
        phase = got.get("status", {}).get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    logs = kubectl("logs", name, "-n", ns, check=False).stdout
    kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)
    assert phase == "Succeeded", f"{name}: {phase}\n{logs}"
    return logs


def busybox_ref(session: NodeSession) -> str:
    for tag, ref in session.info.images.items():
        if tag.startswith("steward-test/busybox:"):
            return ref
    unavailable("no busybox image in the node's containerd")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def namespaces(kubectl: Runner, *names: str) -> Iterator[None]:
    for n in names:
        kubectl("create", "namespace", n)
    try:
        yield
    finally:
        for n in names:
            strip_finalizers(kubectl, n)
            kubectl("delete", "namespace", n, "--wait=false", check=False)
