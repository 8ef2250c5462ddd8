"""A real kubelet node: pods run, serve, reach each other through Services and
the apiserver through the ``kubernetes`` Service; the operator image runs as
uid 65532 with a read-only root; the harness leaves the machine as it found it.

Addresses used: pod IPs and the bridge address (both on the bridge the harness
made), ClusterIPs from inside pods, 127.0.0.1. Nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hack.testenv import cluster

from tests.support.env import in_ci, unavailable
from tests.support.helm_node import diagnose
from tests.support.kubectl import Runner
from tests.support.node import NodeSession

STEWARD_VERSION = "0.1.0"


def _image(info: cluster.NodeClusterInfo, prefix: str) -> str:
    for tag, ref in info.images.items():
        if tag.startswith(prefix):
            return ref
    unavailable(f"no {prefix}* image imported into the node's containerd")
    raise AssertionError("unreachable")


def _apply(kubectl: Runner, ns: str, *objs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
    )


def _pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": spec.pop("automount", False),
            "containers": [container],
            **spec,
        },
    }


def _wait_phase(kubectl: Runner, ns: str, name: str, phase: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = json.loads(kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)
        got = pod.get("status", {}).get("phase")
        if got == phase:
            return pod
        if got in ("Failed", "Succeeded") and got != phase:
            break
        time.sleep(0.5)
    logs = kubectl("logs", name, "-n", ns, check=False)
    events = kubectl("get", "events", "-n", ns, check=False).stdout
    pytest.fail(
        f"pod {name} not {phase}: {json.dumps(pod.get('status', {}), indent=1)[-3000:]}\n"
        f"logs: {logs.stdout}{logs.stderr}\nevents:\n{events}",
        pytrace=False,
    )


def test_node_is_ready(node_cluster: cluster.NodeClusterInfo, node_kubectl: Runner) -> None:
    node = json.loads(node_kubectl("get", "node", node_cluster.node_name, "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True", conds
    addrs = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addrs["InternalIP"] == node_cluster.node_ip
    print(f"bring-up {node_cluster.startup_seconds}s: {dict(node_cluster.timings)}")


def test_pod_serves_host_and_clusterip(
    node_cluster: cluster.NodeClusterInfo, node_kubectl: Runner, node_namespace: str
) -> None:
    ns, busybox = node_namespace, _image(node_cluster, "steward-test/busybox:")
    web = _pod(
        "web",
        busybox,
        ["httpd", "-f", "-p", "8080", "-h", "/www"],
        container={
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        },
    )
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _apply(node_kubectl, ns, web, svc)
    node_kubectl("wait", "-n", ns, "pod/web", "--for=condition=Ready", "--timeout=90s", timeout=100)
    pod = json.loads(node_kubectl("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    pod_ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(node_cluster.pod_subnet)

    # From the host, on the pod IP (an address on the harness's bridge).
    with urllib.request.urlopen(f"http://{pod_ip}:8080/", timeout=5) as resp:
        assert resp.read().decode().strip() == "steward-test ok"

    # From another pod, through the ClusterIP (kube-proxy DNAT, bridge, firewall plugin).
    svc_ip = json.loads(node_kubectl("get", "svc", "web", "-n", ns, "-o", "json").stdout)["spec"][
        "clusterIP"
    ]
    assert ipaddress.ip_address(svc_ip) in ipaddress.ip_network(node_cluster.service_cidr)
    # busybox-static's wget segfaults (static glibc, no NSS): speak HTTP with nc.
    script = (
        "for i in $(seq 1 30); do "
        f"out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {svc_ip} 80) && "
        "case $out in *'steward-test ok'*) echo \"$out\" | tail -n 1; exit 0;; esac; "
        "sleep 1; done; exit 1"
    )
    client = _pod("client", busybox, ["sh", "-c", script], restartPolicy="Never")
    _apply(node_kubectl, ns, client)
    _wait_phase(node_kubectl, ns, "client", "Succeeded")
    # Earlier attempts may time out until kube-proxy has programmed the new Service.
    logs = node_kubectl("logs", "client", "-n", ns).stdout.strip().splitlines()
    assert logs[-1] == "steward-test ok", logs


def test_pod_reaches_apiserver_through_kubernetes_service(
    node_cluster: cluster.NodeClusterInfo, node_kubectl: Runner, node_namespace: str
) -> None:
    """The service-account token, the root CA and the kubernetes Service work:
    the apiserver's certificate verifies for the ClusterIP, the token is
    authenticated (403 from RBAC, not 401)."""
    ns, python = node_namespace, _image(node_cluster, "steward-test/python-base:")
    code = r"""
import os, ssl, urllib.request, urllib.error
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
print("host", host)
base = f"https://{host}:{port}"
print("healthz", urllib.request.urlopen(base + "/healthz", context=ctx, timeout=5).read().decode())
req = urllib.request.Request(base + "/api/v1/namespaces/kube-system/secrets",
                             headers={"Authorization": "Bearer " + open(f"{sa}/token").read()})
try:
    urllib.request.urlopen(req, context=ctx, timeout=5)
    print("secrets allowed?!")
except urllib.error.HTTPError as exc:
    print("secrets", exc.code)
"""
    _apply(
        node_kubectl,
        ns,
        _pod("api", python, ["python3", "-c", code], restartPolicy="Never", automount=True),
    )
    _wait_phase(node_kubectl, ns, "api", "Succeeded")
    out = node_kubectl("logs", "api", "-n", ns).stdout.split("\n")
    first_svc_ip = str(ipaddress.ip_network(node_cluster.service_cidr).network_address + 1)
    assert out[:3] == [f"host {first_svc_ip}", "healthz ok", "secrets 403"], out


def test_operator_image_runs_read_only_as_65532(
    node_session: NodeSession, node_kubectl: Runner, node_namespace: str
) -> None:
    if node_session.operator_image is None:
        unavailable(f"operator image unavailable: {node_session.operator_error}")
    assert node_session.operator_image is not None
    script = (
        "steward version && id -u && id -g && "
        "if touch /usr/x 2>/dev/null; then echo root-writable; else echo root-read-only; fi && "
        "touch /tmp/ok /var/lib/steward/ok && echo writable-dirs-ok"
    )
    pod = _pod(
        "operator",
        node_session.operator_image,
        ["/bin/sh", "-c", script],
        restartPolicy="Never",
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        container={
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "state", "mountPath": "/var/lib/steward"},
            ],
        },
        volumes=[{"name": "tmp", "emptyDir": {}}, {"name": "state", "emptyDir": {}}],
    )
    _apply(node_kubectl, node_namespace, pod)
    _wait_phase(node_kubectl, node_namespace, "operator", "Succeeded", timeout=120)
    out = node_kubectl("logs", "operator", "-n", node_namespace).stdout.split()
    assert out == [
        "steward",
        STEWARD_VERSION,
        "65532",
        "65532",
        "root-read-only",
        "writable-dirs-ok",
    ], out


def _docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def test_operator_image_docker_run_read_only(node_session: NodeSession) -> None:
    """The same archive loads into Docker and runs with --read-only --user 65532."""
    archive = node_session.operator_archive
    if archive is None:
        unavailable(f"operator image unavailable: {node_session.operator_error}")
    if not _docker_ok():
        unavailable("no Docker engine answers (hack/docker/ensure-dockerd.sh)")
    assert archive is not None
    tag = Path(f"{archive}.tag").read_text().strip()
    subprocess.run(
        ["docker", "load", "-q", "-i", str(archive)], check=True, capture_output=True, timeout=300
    )
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--read-only",
            "--user",
            "65532:65532",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            tag,
            "version",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"steward {STEWARD_VERSION}"


def test_chart_runs_the_operator_on_the_node(
    node_session: NodeSession, node_kubectl: Runner, node_namespace: str
) -> None:
    """`helm install charts/steward` with the chart's defaults (uid 65532,
    read-only root, RuntimeDefault seccomp) runs the operator image on the node,
    and the operator brings examples/http-daemon.yaml to Ready."""
    if node_session.operator_image is None:
        unavailable(f"operator image unavailable: {node_session.operator_error}")
    info = node_session.info
    helm = str(info.control_plane.bin_dir / "helm")
    release, ns = "steward-node-e2e", "steward-node-e2e"
    chart = Path(__file__).resolve().parents[3] / "charts" / "steward"
    example = chart.parents[1] / "examples" / "http-daemon.yaml"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            helm,
            "install",
            release,
            str(chart),
            "-n",
            ns,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ],
        env=info.env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    try:
        if proc.returncode != 0:
            pytest.fail(
                f"helm install failed: {proc.stdout}{proc.stderr}\n"
                + diagnose(node_kubectl, ns, release),
                pytrace=False,
            )
        installed = time.monotonic() - t0
        manifest = example.read_text().replace("namespace: default", f"namespace: {node_namespace}")
        node_kubectl("apply", "-f", "-", input=manifest)
        waited = node_kubectl(
            "wait",
            "-n",
            node_namespace,
            "managedservice/http-daemon",
            "--for=condition=Ready",
            "--timeout=90s",
            timeout=100,
            check=False,
        )
        if waited.returncode != 0:
            pytest.fail(
                f"ManagedService not Ready: {waited.stderr}\n"
                + diagnose(node_kubectl, ns, release, node_namespace),
                pytrace=False,
            )
        ready = time.monotonic() - t0
        rss = {}
        for cg in cluster.kubepods_cgroups():
            if cg.parent.name == "memory":
                for pid in cluster.cgroup_procs(cg):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if any(a.endswith(b"/steward") for a in argv):
                        status = Path(f"/proc/{pid}/status").read_text()
                        rss[pid] = next(
                            int(line.split()[1]) // 1024
                            for line in status.splitlines()
                            if line.startswith("VmRSS")
                        )
        print(
            f"chart installed in {installed:.1f}s, ManagedService Ready at {ready:.1f}s, "
            f"operator RSS {rss} MB"
        )
    finally:
        node_kubectl(
            "delete",
            "-n",
            node_namespace,
            "managedservice/http-daemon",
            "--ignore-not-found",
            "--timeout=60s",
            check=False,
            timeout=70,
        )
        subprocess.run(
            [helm, "uninstall", release, "-n", ns, "--wait", "--timeout", "60s"],
            env=info.env(),
            capture_output=True,
            timeout=90,
        )
        node_kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.node_teardown
def test_teardown_restores_the_machine(node_session: NodeSession) -> None:
    """Stop the session's cluster (the fixture's own stop is then a no-op) and
    check that nothing is left: processes, shims, bridge, KUBE-/CNI- iptables
    chains (v4 and v6), mounts, netns, kubepods cgroups, sysctls, work dir."""
    nc, info = node_session.cluster, node_session.info
    pids = dict(nc.pids)
    assert {"kubelet", "containerd", "kube-apiserver", "etcd", "kube-proxy"} <= set(pids)
    report = nc.stop()
    print(f"teardown {report.seconds}s: {report.timings}")
    assert report.errors == []
    assert report.leftovers == []
    assert not Path(f"/sys/class/net/{info.bridge}").exists()
    assert not info.work_dir.exists()
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(), (
            name
        )
    assert cluster.kubepods_cgroups() == []
    saved = nc._before["sysctls"]
    assert cluster.read_sysctls() == saved
    if in_ci():
        assert report.seconds < 120


@pytest.mark.node_teardown
def test_killed_run_is_cleaned_up_by_the_next_start(node_session: NodeSession) -> None:
    """SIGKILL the harness with a pod running (its shim and the bridge, cgroups,
    iptables chains and sysctls stay behind); the next start undoes all that
    (from the state file it keeps under /run/lock) before it starts."""
    nc = node_session.cluster
    nc.stop()  # idempotent: the session's cluster must not hold the lock
    env = dict(os.environ, STEWARD_TESTBIN=str(nc.bin_dir), STEWARD_NODEBIN=str(nc.node_bin_dir))
    repo = Path(cluster.__file__).resolve().parents[2]  # hack/testenv/cluster.py
    proc = subprocess.Popen(
        [sys.executable, "-m", "hack.testenv.cluster", "--node", "--no-images"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=repo,
    )
    try:
        assert proc.stdout is not None
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (proc.stdout.readline().strip() for _ in range(4))
            if line.startswith("export ")
        )
        assert "KUBECONFIG" in exports, exports
        pause_ref = (nc.node_bin_dir / "pause.tag").read_text().strip()
        kubectl = str(nc.bin_dir / "kubectl")
        kenv = dict(env, KUBECONFIG=exports["KUBECONFIG"])
        subprocess.run(
            [kubectl, "run", "p", f"--image={pause_ref}", "--image-pull-policy=Never"],
            env=kenv,
            check=True,
            capture_output=True,
            timeout=30,
        )
        subprocess.run(
            [kubectl, "wait", "--for=condition=Ready", "pod/p", "--timeout=60s"],
            env=kenv,
            check=True,
            capture_output=True,
            timeout=70,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert cluster.STATE_FILE.exists()
    assert Path(f"/sys/class/net/{nc.bridge}").exists()  # left behind, as expected

    fresh = cluster.NodeCluster(nc.bin_dir, nc.node_bin_dir)
    fresh.start()
    report = fresh.stop()
    assert report.errors == [] and report.leftovers == []
    assert not cluster.STATE_FILE.exists()
    assert not Path(f"/sys/class/net/{nc.bridge}").exists()
    assert cluster.kubepods_cgroups() == []
    assert cluster.read_sysctls() == nc._before["sysctls"]
    assert cluster.iptables_leftovers(nc._before["ipt4"], 4) == []
    assert cluster.iptables_leftovers(nc._before["ipt6"], 6) == []
