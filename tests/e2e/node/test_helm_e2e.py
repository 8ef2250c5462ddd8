"""End to end through Helm on a real kubelet node (issue 15, item 3).

* The README's "On a cluster" quickstart, line by line as written (but the two
  ``kind`` lines: no kind here; the archive is imported into the node's
  containerd instead, as ``kind load image-archive`` would), then every
  daemon/Terraform example Ready; time from ``helm install --wait`` returning
  to the first Ready, the operator pod's RSS (its memory cgroup).
* ``helm upgrade`` that rolls the pod: the new pod starts each daemon once
  (daemons live in the operator pod and die with it); the liveness probe: the
  operator SIGSTOPped from the host, the kubelet restarts the container.
* ``helm uninstall`` leaves what the README says: CRDs, ManagedServices with
  the finalizer (deleting one hangs until the finalizer goes).
* The container flavor with ``docker.mode=socket`` and ``hostNetwork=true``
  (the README's line): Ready on the node's engine, adopted (same container,
  same pid) by the pod a ``helm upgrade`` brings; without ``hostNetwork`` the
  probe hits the pod's own loopback and the container never becomes Ready.
* ``watchNamespaces=[a]`` with the pod's own ServiceAccount token (no
  kubeconfig in the pod): a ManagedService in ``a`` Ready, one in ``b``
  untouched; the liveness endpoint answers on the pod IP and the metrics
  Service answers /metrics from another pod through its ClusterIP.

Addresses used: 127.0.0.1, pod IPs and the bridge address, ClusterIPs from
inside pods. Every release, namespace and Docker container made here is
removed by name.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
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


# ----------------------------------------------------------------- helpers


def _need_operator(session: NodeSession) -> None:
    if session.operator_image is None:
        unavailable(f"operator image unavailable: {session.operator_error}")


def _sh(
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


def _helm(session: NodeSession, *args: str, timeout: float = 200, check: bool = True) -> str:
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


def _quickstart_lines() -> list[str]:
    """The first ```bash block of README.md's "On a cluster" section."""
    text = README.read_text()
    section = text[text.index("## On a cluster") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in README's On a cluster section"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def _readme_line(startswith: str) -> str:
    """The one line of README.md's "On a cluster" section starting with ``startswith``."""
    text = README.read_text()
    section = text[text.index("## On a cluster") : text.index("## Command line")]
    found = [ln.strip() for ln in section.splitlines() if ln.strip().startswith(startswith)]
    assert len(found) == 1, (startswith, found)
    return found[0]


def _msvcs(kubectl: Runner, ns: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("get", "managedservices", "-n", ns, "-o", "json").stdout)["items"]
    return {m["metadata"]["name"]: m for m in items}


def _ready(msvc: dict[str, Any]) -> bool:
    conds = (msvc.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _all_ready(kubectl: Runner, ns: str) -> bool:
    return all(_ready(m) for m in _msvcs(kubectl, ns).values())


def _operator_pod(kubectl: Runner, ns: str, release: str) -> dict[str, Any]:
    pods = json.loads(
        kubectl(
            "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
        ).stdout
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return live[0]


def _pod_cgroup(uid: str) -> Path:
    found = glob.glob(f"/sys/fs/cgroup/memory/kubepods/**/pod{uid}", recursive=True)
    found += glob.glob(f"/sys/fs/cgroup/kubepods*/**/pod{uid}", recursive=True)
    assert found, f"no cgroup for pod {uid}"
    return Path(found[0])


def _pod_pids(uid: str) -> list[int]:
    return cluster.cgroup_procs(_pod_cgroup(uid))


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _environ(pid: int) -> dict[str, str]:
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


def _operator_pid(uid: str) -> int:
    pids = [
        p
        for p in _pod_pids(uid)
        if any(a.endswith("/steward") for a in _argv(p)) and "run" in _argv(p)
    ]
    assert len(pids) == 1, {p: _argv(p) for p in _pod_pids(uid)}
    return pids[0]


def _launch_ids(uid: str) -> dict[int, str]:
    """pid -> STEWARD_LAUNCH_ID for each daemon process in the pod."""
    out = {}
    for pid in _pod_pids(uid):
        launch = _environ(pid).get("STEWARD_LAUNCH_ID")
        if launch:
            out[pid] = launch
    return out


def _processes_with_launch_id(launch: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _environ(int(entry.name)).get("STEWARD_LAUNCH_ID") == launch:
            out.append(int(entry.name))
    return out


def _rss_mb(uid: str) -> tuple[float, float]:
    """(pod memory cgroup RSS, operator process VmRSS) in MB."""
    stat = dict(
        line.split() for line in (_pod_cgroup(uid) / "memory.stat").read_text().splitlines()
    )
    pod = int(stat.get("total_rss", stat.get("anon", 0))) / 2**20
    status = Path(f"/proc/{_operator_pid(uid)}/status").read_text()
    vm = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")) / 1024
    return round(pod, 1), round(vm, 1)


def _diagnose(kubectl: Runner, ns: str, release: str, msvc_ns: str | None = None) -> str:
    out = [kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout]
    out.append(kubectl("get", "events", "-n", ns, check=False).stdout[-3000:])
    logs = kubectl("logs", "-n", ns, f"deploy/{release}", "--tail=80", check=False)
    out.append(f"--- operator logs ---\n{logs.stdout[-6000:]}{logs.stderr[-1000:]}")
    if msvc_ns:
        out.append(kubectl("get", "msvc", "-n", msvc_ns, "-o", "yaml", check=False).stdout[-6000:])
    return "\n".join(out)


def _wait_ready(
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
        for name, m in _msvcs(kubectl, ns).items():
            if name in names and name not in first and _ready(m):
                first[name] = round(time.monotonic() - since, 1)
        if len(first) == len(names):
            return first
        time.sleep(0.5)
    pytest.fail(
        f"not Ready within {timeout}s: {sorted(set(names) - set(first))} (ready: {first})\n"
        + _diagnose(kubectl, diag[0], diag[1], ns),
        pytrace=False,
    )
    raise AssertionError("unreachable")


def _examples(ns: str, busybox: str | None = None) -> dict[str, list[dict[str, Any]]]:
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


def _apply(kubectl: Runner, *objs: dict[str, Any]) -> None:
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    )


def _strip_finalizers(kubectl: Runner, ns: str) -> None:
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


def _docker(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=check
    )


def _docker_busybox() -> str | None:
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        return None
    out = _docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return next((i for i in out if i.startswith("steward-test/busybox:")), None)


def _remove_containers(ns: str) -> None:
    """Docker containers a ManagedService of namespace ``ns`` left, by id."""
    ids = _docker("ps", "-aq", "--filter", "label=steward.dev/managed=true").stdout.split()
    for cid in ids:
        label = _docker(
            "inspect", "-f", '{{index .Config.Labels "steward.dev/service"}}', cid
        ).stdout.strip()
        if label.startswith(f"{ns}/"):
            _docker("rm", "-f", cid)


def _http_from_pod(
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
    _apply(kubectl, pod)
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


def _busybox_ref(session: NodeSession) -> str:
    for tag, ref in session.info.images.items():
        if tag.startswith("steward-test/busybox:"):
            return ref
    unavailable("no busybox image in the node's containerd")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _namespaces(kubectl: Runner, *names: str) -> Iterator[None]:
    for n in names:
        kubectl("create", "namespace", n)
    try:
        yield
    finally:
        for n in names:
            _strip_finalizers(kubectl, n)
            kubectl("delete", "namespace", n, "--wait=false", check=False)


# ----------------------------------------------------------------- tests


@pytest.mark.timeout(420)
def test_readme_quickstart_upgrade_liveness_uninstall(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """README quickstart as written; helm upgrade; liveness restart; helm uninstall."""
    _need_operator(node_session)
    info, kubectl = node_session.info, node_kubectl
    release, rns, ns = "steward", "steward-system", "default"
    lines = _quickstart_lines()
    # Every line is one this test runs, but kind's (stated in the README beside them).
    kind = [ln for ln in lines if ln.startswith("kind ")]
    assert len(kind) == 2 and all("# kind: not run by the tests" in ln for ln in kind), kind
    build, helm_install, apply, wait = [ln for ln in lines if not ln.startswith("kind ")]
    assert build.startswith("IMAGE=$(bash hack/image/build-image.sh)"), build
    assert helm_install.startswith("helm install steward charts/steward "), helm_install
    assert apply.startswith("kubectl apply -f examples/"), apply
    assert wait.startswith("kubectl wait --for=condition=Ready managedservice --all"), wait
    # The quickstart applies every ManagedService example but web-container (see its test).
    applied = sorted(re.findall(r"-f examples/([\w-]+)\.yaml", apply))
    assert applied == sorted(set(_examples(ns)) - {"web-container"}), applied

    image = _sh(node_session, build + '\necho "$IMAGE"', timeout=900).stdout.split()[-1]
    tag = Path(f"{image}.tag").read_text().strip()
    assert tag == "steward:0.1.0", tag
    imported_here = False
    if node_session.operator_archive is None or Path(image) != node_session.operator_archive:
        # The sources changed since the session's import: load this build, as kind load would.
        subprocess.run(
            info.ctr("images", "import", "--all-platforms", image),
            check=True,
            capture_output=True,
            timeout=300,
        )
        imported_here = True
    print(f"\nimage {image} (imported by this test: {imported_here})")

    try:
        t0 = time.monotonic()
        _sh(node_session, helm_install, timeout=200)
        installed = time.monotonic()
        _sh(node_session, apply, timeout=60)
        ready = _wait_ready(
            kubectl, ns, [*DAEMON_EXAMPLES, "terraform-module"], 180, (rns, release), installed
        )
        _sh(node_session, wait, timeout=200)
        pod = _operator_pod(kubectl, rns, release)
        uid = pod["metadata"]["uid"]
        pod_rss, op_rss = _rss_mb(uid)
        print(
            f"helm install --wait {installed - t0:.1f}s; from its return to first Ready "
            f"{min(ready.values())}s, all Ready {ready}; operator pod RSS {pod_rss} MB "
            f"(cgroup total_rss), operator process VmRSS {op_rss} MB"
        )
        assert not any(s.get("hostNetwork") for s in [pod["spec"]])

        # Daemons run in the operator pod: one process per launch id.
        before = _launch_ids(uid)
        assert len(before) == len(DAEMON_EXAMPLES), {p: _argv(p) for p in before}
        for launch in before.values():
            assert len(_processes_with_launch_id(launch)) == 1

        # --- helm upgrade with values that roll the pod (and a quicker liveness probe).
        _helm(
            node_session,
            "upgrade",
            release,
            str(CHART),
            "-n",
            rns,
            "--reuse-values",
            "--wait",
            "--timeout",
            "150s",
            "--set",
            "operator.logFormat=text",
            "--set",
            "liveness.periodSeconds=2",
            "--set",
            "liveness.timeoutSeconds=1",
            "--set",
            "liveness.failureThreshold=2",
            "--set",
            "liveness.initialDelaySeconds=5",
            "--set",
            "terminationGracePeriodSeconds=5",
        )
        t_up = time.monotonic()
        new = _operator_pod(kubectl, rns, release)
        new_uid = new["metadata"]["uid"]
        assert new_uid != uid, "helm upgrade did not replace the pod"
        # The old pod's daemons are gone with it (no process carries their launch ids).
        assert not any(_processes_with_launch_id(launch) for launch in before.values())
        # The new pod starts every daemon again (they died with the old pod), once.
        deadline = time.monotonic() + 120
        after: dict[int, str] = {}
        while time.monotonic() < deadline:
            after = _launch_ids(new_uid)
            msvcs = _msvcs(kubectl, ns)
            if len(after) >= len(DAEMON_EXAMPLES) and all(_ready(m) for m in msvcs.values()):
                break
            time.sleep(0.5)
        assert len(after) == len(DAEMON_EXAMPLES), {p: _argv(p) for p in after}
        assert set(after.values()).isdisjoint(before.values())
        for launch in after.values():
            assert len(_processes_with_launch_id(launch)) == 1, launch
        print(
            f"upgrade: pod replaced, {len(after)} daemons running again after "
            f"{time.monotonic() - t_up:.1f}s, one process each"
        )
        time.sleep(3)  # a second start would show by now
        assert _launch_ids(new_uid) == after

        # --- liveness: the probe is configured and answers on the pod IP ...
        probe = new["spec"]["containers"][0]["livenessProbe"]
        assert probe["httpGet"]["path"] == "/healthz" and probe["periodSeconds"] == 2, probe
        pod_ip = new["status"]["podIP"]
        with urllib.request.urlopen(f"http://{pod_ip}:8080/healthz", timeout=5) as resp:
            assert resp.status == 200
        # ... and an operator that stops answering is restarted by the kubelet.
        op_pid = _operator_pid(new_uid)
        restarts = new["status"]["containerStatuses"][0]["restartCount"]
        t_stop = time.monotonic()
        os.kill(op_pid, signal.SIGSTOP)
        deadline = time.monotonic() + 90
        restarted = False
        while time.monotonic() < deadline:
            cur = _operator_pod(kubectl, rns, release)
            status = cur["status"]["containerStatuses"][0]
            if status["restartCount"] > restarts and "running" in status["state"]:
                restarted = True
                break
            time.sleep(1)
        if not restarted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(op_pid, signal.SIGCONT)
            pytest.fail(
                "kubelet did not restart the stopped operator\n" + _diagnose(kubectl, rns, release)
            )
        assert cur["metadata"]["uid"] == new_uid  # same pod, new container
        assert not Path(f"/proc/{op_pid}").exists()
        t_restart = time.monotonic() - t_stop
        # Its daemons died with the container; the restarted operator starts each once.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            again = _launch_ids(new_uid)
            fresh = set(again.values()).isdisjoint(after.values())
            if len(again) >= len(DAEMON_EXAMPLES) and fresh and _all_ready(kubectl, ns):
                break
            time.sleep(0.5)
        assert len(again) == len(DAEMON_EXAMPLES), {p: _argv(p) for p in again}
        print(f"liveness: SIGSTOP -> restarted in {t_restart:.1f}s; daemons again once each")

        # --- helm uninstall with ManagedServices left (the Terraform one deleted first).
        kubectl(
            "delete", "-n", ns, "managedservice/terraform-module", "--timeout=120s", timeout=130
        )
        _sh(node_session, _readme_line("helm uninstall steward "), timeout=150)
        left = _msvcs(kubectl, ns)
        assert set(left) == set(DAEMON_EXAMPLES), sorted(left)
        assert all(FINALIZER in m["metadata"].get("finalizers", []) for m in left.values())
        for crd in (
            "managedservices.steward.dev",
            "stewardpolicies.steward.dev",
            "kopfpeerings.kopf.dev",
            "clusterkopfpeerings.kopf.dev",
        ):
            kubectl("get", "crd", crd)
        gone = {
            "deployment": kubectl("get", "deploy", "-n", rns, "-o", "name").stdout.strip(),
            "serviceaccount": kubectl(
                "get", "sa", "-n", rns, "-l", "app.kubernetes.io/instance=steward", "-o", "name"
            ).stdout.strip(),
            "clusterrole": kubectl(
                "get", "clusterrole", f"{rns}-{release}", "--ignore-not-found"
            ).stdout.strip(),
            "admission": kubectl(
                "get",
                "validatingadmissionpolicy",
                "-l",
                "app.kubernetes.io/instance=steward",
                "-o",
                "name",
            ).stdout.strip(),
            "stewardpolicy": kubectl(
                "get", "stewardpolicy", "-l", "app.kubernetes.io/instance=steward", "-o", "name"
            ).stdout.strip(),
        }
        assert not any(gone.values()), gone
        # Without an operator, a delete hangs on the finalizer ...
        kubectl("delete", "-n", ns, "managedservice/http-daemon", "--wait=false")
        time.sleep(3)
        stuck = _msvcs(kubectl, ns)["http-daemon"]
        assert stuck["metadata"].get("deletionTimestamp"), stuck["metadata"]
        # ... until the finalizer is removed by hand (the README's line).
        kubectl(
            "patch",
            "-n",
            ns,
            "msvc",
            "http-daemon",
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
        kubectl("wait", "-n", ns, "--for=delete", "msvc/http-daemon", "--timeout=30s")
    finally:
        _helm(
            node_session, "uninstall", release, "-n", rns, "--wait", "--timeout", "90s", check=False
        )
        _strip_finalizers(kubectl, ns)
        kubectl("delete", "managedservice", "--all", "-n", ns, "--wait=false", check=False)
        kubectl("delete", "secret", "demo-token", "-n", ns, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", rns, "--wait=false", check=False)


@pytest.mark.timeout(300)
def test_container_flavor_socket_host_network(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """docker.mode=socket + hostNetwork (the README's line): web-container Ready on the
    node's engine; helm upgrade adopts it (same container, same pid); without hostNetwork
    the probe reaches the pod's own loopback and it stops being healthy."""
    _need_operator(node_session)
    busybox = _docker_busybox()
    if busybox is None:
        unavailable("no Docker engine with steward-test/busybox (hack/docker/ensure-dockerd.sh)")
    assert busybox is not None
    kubectl = node_kubectl
    line = _readme_line("helm install steward-docker ")
    release = rns = "steward-docker"
    ns = f"helm-docker-{uuid.uuid4().hex[:6]}"
    docs = _examples(ns, busybox)["web-container"]
    cname = f"steward-{ns}.web-container"
    with _namespaces(kubectl, ns):
        try:
            _sh(node_session, line, timeout=200)
            pod = _operator_pod(kubectl, rns, release)
            assert pod["spec"].get("hostNetwork") is True
            t0 = time.monotonic()
            _apply(kubectl, *docs)
            took = _wait_ready(kubectl, ns, ["web-container"], 120, (rns, release), t0)
            kubectl("wait", "-n", ns, "msvc/web-container", "--for=condition=Ready", "--timeout=5s")
            msvc = _msvcs(kubectl, ns)["web-container"]
            uri = msvc["status"]["endpoint"]["uri"]
            assert uri.startswith("http://127.0.0.1:"), uri
            with urllib.request.urlopen(uri + "/", timeout=5) as resp:
                assert b"hello from a container" in resp.read()
            attrs = json.loads(_docker("inspect", cname, check=True).stdout)[0]
            print(
                f"\nweb-container Ready in {took['web-container']}s at {uri} "
                f"(container {attrs['Id'][:12]}, pid {attrs['State']['Pid']})"
            )

            # helm upgrade rolls the pod: the new one adopts the running container.
            _helm(
                node_session,
                "upgrade",
                release,
                str(CHART),
                "-n",
                rns,
                "--reuse-values",
                "--wait",
                "--timeout",
                "150s",
                "--set",
                "operator.logFormat=text",
            )
            new = _operator_pod(kubectl, rns, release)
            assert new["metadata"]["uid"] != pod["metadata"]["uid"]
            logs = ""
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                logs = kubectl("logs", "-n", rns, new["metadata"]["name"], check=False).stdout
                if "web-container" in logs and _ready(_msvcs(kubectl, ns)["web-container"]):
                    break
                time.sleep(1)
            time.sleep(3)
            again = json.loads(_docker("inspect", cname, check=True).stdout)[0]
            assert again["Id"] == attrs["Id"], "the new operator pod replaced the container"
            assert again["State"]["Pid"] == attrs["State"]["Pid"]
            assert again["State"]["StartedAt"] == attrs["State"]["StartedAt"]
            assert again["RestartCount"] == attrs["RestartCount"]
            assert _ready(_msvcs(kubectl, ns)["web-container"])
            print("upgrade: container adopted (same id, pid, start time)")

            # Without hostNetwork the endpoint (the node's 127.0.0.1) is out of the pod's reach.
            _helm(
                node_session,
                "upgrade",
                release,
                str(CHART),
                "-n",
                rns,
                "--reuse-values",
                "--wait",
                "--timeout",
                "150s",
                "--set",
                "hostNetwork=false",
            )
            deadline = time.monotonic() + 90
            health: dict[str, Any] = {}
            while time.monotonic() < deadline:
                m = _msvcs(kubectl, ns)["web-container"]
                health = (m.get("status") or {}).get("health") or {}
                if not _ready(m) and health.get("state") not in (None, "healthy"):
                    break
                time.sleep(1)
            assert health.get("state") not in (None, "healthy"), health
            with urllib.request.urlopen(uri + "/", timeout=5) as resp:  # from the node: fine
                assert b"hello from a container" in resp.read()
            print(f"without hostNetwork: {health}")

            kubectl("delete", "-n", ns, "msvc/web-container", "--timeout=90s", timeout=100)
            assert _docker("inspect", cname).returncode != 0, "the finalizer left the container"
        except BaseException:
            print(_diagnose(kubectl, rns, release, ns))
            raise
        finally:
            _helm(
                node_session,
                "uninstall",
                release,
                "-n",
                rns,
                "--wait",
                "--timeout",
                "90s",
                check=False,
            )
            _remove_containers(ns)
            kubectl("delete", "namespace", rns, "--wait=false", check=False)


@pytest.mark.timeout(300)
def test_watch_namespaces_pod_token_metrics_service(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """watchNamespaces=[a] with the pod's ServiceAccount token: a Ready, b untouched;
    /healthz on the pod IP; /metrics through the metrics Service's ClusterIP from a pod."""
    _need_operator(node_session)
    kubectl = node_kubectl
    suffix = uuid.uuid4().hex[:6]
    a, b = f"helm-a-{suffix}", f"helm-b-{suffix}"
    release = rns = "steward-ns"
    doc = _examples("x")["http-daemon"][0]
    with _namespaces(kubectl, a, b, rns):
        try:
            _helm(
                node_session,
                "install",
                release,
                str(CHART),
                "-n",
                rns,
                "--wait",
                "--timeout",
                "150s",
                "--set",
                f"watchNamespaces={{{a}}}",
                "--set",
                "metrics.service.enabled=true",
            )
            # Nothing cluster-wide: a Role in a only.
            assert not kubectl(
                "get", "clusterrole", f"{rns}-{release}", "--ignore-not-found"
            ).stdout.strip()
            kubectl("get", "role", release, "-n", a)
            assert not kubectl("get", "role", "-n", b, "-o", "name").stdout.strip()
            for ns in (a, b):
                obj = copy.deepcopy(doc)
                obj["metadata"]["namespace"] = ns
                _apply(kubectl, obj)
            _wait_ready(kubectl, a, ["http-daemon"], 90, (rns, release))
            time.sleep(5)
            ignored = _msvcs(kubectl, b)["http-daemon"]
            # No status but the CRD's default (observedGeneration 0), nothing written to it.
            assert ignored.get("status") == {"observedGeneration": 0}, ignored.get("status")
            full = kubectl(
                "get", "msvc", "http-daemon", "-n", b, "-o", "json", "--show-managed-fields"
            )
            fields = json.loads(full.stdout)["metadata"].get("managedFields", [])
            writers = {f["manager"] for f in fields}
            assert writers == {"kubectl-client-side-apply"}, writers
            assert not ignored["metadata"].get("finalizers"), ignored["metadata"]
            assert not kubectl("get", "events", "-n", b, "-o", "name").stdout.strip()

            # The in-cluster ServiceAccount token, and no kubeconfig anywhere in the pod.
            pod = _operator_pod(kubectl, rns, release)
            uid = pod["metadata"]["uid"]
            pid = _operator_pid(uid)
            assert "KUBECONFIG" not in _environ(pid)
            assert not any(a.startswith("--kubeconfig") for a in _argv(pid))
            root = Path(f"/proc/{pid}/root")
            assert not (root / "tmp/.kube/config").exists()
            mounts = [
                ln.split()[4] for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            ]
            # (/var/run is a link to /run in the image: the runtime mounts the resolved path.)
            sa_dir = "/run/secrets/kubernetes.io/serviceaccount"
            assert {sa_dir, f"/var{sa_dir}"} & set(mounts), mounts
            assert _environ(pid).get("KUBERNETES_SERVICE_HOST")
            logs = kubectl("logs", "-n", rns, pod["metadata"]["name"]).stdout
            # kopf's login through the kubernetes client, which (no kubeconfig) is in-cluster.
            assert "Activity 'login_via_client' succeeded." in logs, logs[-3000:]
            sa = pod["spec"]["serviceAccountName"]
            # That account may write status in a, and nowhere else.
            user = f"system:serviceaccount:{rns}:{sa}"
            can = [
                kubectl(
                    "auth",
                    "can-i",
                    "patch",
                    "managedservices/status",
                    "-n",
                    n,
                    "--as",
                    user,
                    check=False,
                ).stdout.strip()
                for n in (a, b)
            ]
            assert can == ["yes", "no"], can

            # Liveness: configured, 200 on the pod IP from the node.
            probe = pod["spec"]["containers"][0]["livenessProbe"]
            assert probe["httpGet"] == {"path": "/healthz", "port": "healthz", "scheme": "HTTP"}
            with urllib.request.urlopen(
                f"http://{pod['status']['podIP']}:8080/healthz", timeout=5
            ) as resp:
                assert resp.status == 200
            # /metrics through the Service's ClusterIP, from another pod.
            svc = json.loads(
                kubectl("get", "svc", f"{release}-metrics", "-n", rns, "-o", "json").stdout
            )
            ip = svc["spec"]["clusterIP"]
            out = _http_from_pod(
                kubectl, a, _busybox_ref(node_session), "metrics-client", ip, 9090, "/metrics"
            )
            assert "# TYPE" in out and "steward" in out, out[-2000:]
            print(f"\nmetrics via ClusterIP {ip}: {len(out.splitlines())} lines")

            kubectl("delete", "-n", a, "msvc/http-daemon", "--timeout=60s", timeout=70)
        except BaseException:
            print(_diagnose(kubectl, rns, release, a))
            raise
        finally:
            _helm(
                node_session,
                "uninstall",
                release,
                "-n",
                rns,
                "--wait",
                "--timeout",
                "90s",
                check=False,
            )
