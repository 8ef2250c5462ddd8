"""End to end through Helm on a real kubelet node (issue 15, item 3).

* The hn.README's "On a cluster" quickstart, line by line as written (but the two
  ``kind`` lines: no kind here; the archive is imported into the node's
  containerd instead, as ``kind load image-archive`` would), then every
  daemon/Terraform example Ready; time from ``helm install --wait`` returning
  to the first Ready, the operator pod's RSS (its memory cgroup).
* ``helm upgrade`` that rolls the pod: the new pod starts each daemon once
  (daemons live in the operator pod and die with it); the liveness probe: the
  operator SIGSTOPped from the host, the kubelet restarts the container.
* ``helm uninstall`` leaves what the hn.README says: CRDs, ManagedServices with
  the finalizer (deleting one hangs until the finalizer goes).
* The container flavor with ``docker.mode=socket`` and ``hostNetwork=true``
  (the hn.README's line): Ready on the node's engine, adopted (same container,
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
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import helm_node as hn
from tests.support.env import unavailable
from tests.support.kubectl import Runner
from tests.support.node import NodeSession

# ----------------------------------------------------------------- tests


@pytest.mark.timeout(420)
def test_readme_quickstart_upgrade_liveness_uninstall(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """hn.README quickstart as written; helm upgrade; liveness restart; helm uninstall."""
    hn.need_operator(node_session)
    info, kubectl = node_session.info, node_kubectl
    release, rns, ns = "steward", "steward-system", "default"
    lines = hn.quickstart_lines()
    # Every line is one this test runs, but kind's (stated in the hn.README beside them).
    kind = [ln for ln in lines if ln.startswith("kind ")]
    assert len(kind) == 2 and all("# kind: not run by the tests" in ln for ln in kind), kind
    build, helm_install, apply, wait = [ln for ln in lines if not ln.startswith("kind ")]
    assert build.startswith("IMAGE=$(bash hack/image/build-image.sh)"), build
    assert helm_install.startswith("helm install steward charts/steward "), helm_install
    assert apply.startswith("kubectl apply -f examples/"), apply
    assert wait.startswith("kubectl wait --for=condition=Ready managedservice --all"), wait
    # The quickstart applies every ManagedService example but web-container (see its test).
    applied = sorted(re.findall(r"-f examples/([\w-]+)\.yaml", apply))
    assert applied == sorted(set(hn.examples(ns)) - {"web-container"}), applied

    image = hn.sh(node_session, build + '\necho "$IMAGE"', timeout=900).stdout.split()[-1]
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
        hn.sh(node_session, helm_install, timeout=200)
        installed = time.monotonic()
        hn.sh(node_session, apply, timeout=60)
        ready = hn.wait_ready(
            kubectl, ns, [*hn.DAEMON_EXAMPLES, "terraform-module"], 180, (rns, release), installed
        )
        hn.sh(node_session, wait, timeout=200)
        pod = hn.operator_pod(kubectl, rns, release)
        uid = pod["metadata"]["uid"]
        pod_rss, op_rss = hn.rss_mb(uid)
        print(
            f"helm install --wait {installed - t0:.1f}s; from its return to first Ready "
            f"{min(ready.values())}s, all Ready {ready}; operator pod RSS {pod_rss} MB "
            f"(cgroup total_rss), operator process VmRSS {op_rss} MB"
        )
        assert not any(s.get("hostNetwork") for s in [pod["spec"]])

        # Daemons run in the operator pod: one process per launch id.
        before = hn.launch_ids(uid)
        assert len(before) == len(hn.DAEMON_EXAMPLES), {p: hn.argv(p) for p in before}
        for launch in before.values():
            assert len(hn.processes_with_launch_id(launch)) == 1

        # --- helm upgrade with values that roll the pod (and a quicker liveness probe).
        hn.upgrade(
            node_session,
            release,
            rns,
            "operator.logFormat=text",
            "liveness.periodSeconds=2",
            "liveness.timeoutSeconds=1",
            "liveness.failureThreshold=2",
            "liveness.initialDelaySeconds=5",
            "terminationGracePeriodSeconds=5",
        )
        t_up = time.monotonic()
        new = hn.operator_pod(kubectl, rns, release)
        new_uid = new["metadata"]["uid"]
        assert new_uid != uid, "helm upgrade did not replace the pod"
        # The old pod's daemons are gone with it (no process carries their launch ids).
        assert not any(hn.processes_with_launch_id(launch) for launch in before.values())
        # The new pod starts every daemon again (they died with the old pod), once.
        deadline = time.monotonic() + 120
        after: dict[int, str] = {}
        while time.monotonic() < deadline:
            after = hn.launch_ids(new_uid)
            msvcs = hn.msvcs(kubectl, ns)
            if len(after) >= len(hn.DAEMON_EXAMPLES) and all(hn.ready(m) for m in msvcs.values()):
                break
            time.sleep(0.5)
        assert len(after) == len(hn.DAEMON_EXAMPLES), {p: hn.argv(p) for p in after}
        assert set(after.values()).isdisjoint(before.values())
        for launch in after.values():
            assert len(hn.processes_with_launch_id(launch)) == 1, launch
        print(
            f"upgrade: pod replaced, {len(after)} daemons running again after "
            f"{time.monotonic() - t_up:.1f}s, one process each"
        )
        time.sleep(3)  # a second start would show by now
        assert hn.launch_ids(new_uid) == after

        # --- liveness: the probe is configured and answers on the pod IP ...
        probe = new["spec"]["containers"][0]["livenessProbe"]
        assert probe["httpGet"]["path"] == "/healthz" and probe["periodSeconds"] == 2, probe
        pod_ip = new["status"]["podIP"]
        with urllib.request.urlopen(f"http://{pod_ip}:8080/healthz", timeout=5) as resp:
            assert resp.status == 200
        # ... and an operator that stops answering is restarted by the kubelet.
        op_pid = hn.operator_pid(new_uid)
        restarts = new["status"]["containerStatuses"][0]["restartCount"]
        t_stop = time.monotonic()
        os.kill(op_pid, signal.SIGSTOP)
        deadline = time.monotonic() + 90
        restarted = False
        while time.monotonic() < deadline:
            cur = hn.operator_pod(kubectl, rns, release)
            status = cur["status"]["containerStatuses"][0]
            if status["restartCount"] > restarts and "running" in status["state"]:
                restarted = True
                break
            time.sleep(1)
        if not restarted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(op_pid, signal.SIGCONT)
            pytest.fail(
                "kubelet did not restart the stopped operator\n"
                + hn.diagnose(kubectl, rns, release)
            )
        assert cur["metadata"]["uid"] == new_uid  # same pod, new container
        assert not Path(f"/proc/{op_pid}").exists()
        t_restart = time.monotonic() - t_stop
        # Its daemons died with the container; the restarted operator starts each once.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            again = hn.launch_ids(new_uid)
            fresh = set(again.values()).isdisjoint(after.values())
            if len(again) >= len(hn.DAEMON_EXAMPLES) and fresh and hn.all_ready(kubectl, ns):
                break
            time.sleep(0.5)
        assert len(again) == len(hn.DAEMON_EXAMPLES), {p: hn.argv(p) for p in again}
        print(f"liveness: SIGSTOP -> restarted in {t_restart:.1f}s; daemons again once each")

        # --- helm uninstall with ManagedServices left (the Terraform one deleted first).
        kubectl(
            "delete", "-n", ns, "managedservice/terraform-module", "--timeout=120s", timeout=130
        )
        hn.sh(node_session, hn.readme_line("helm uninstall steward "), timeout=150)
        left = hn.msvcs(kubectl, ns)
        assert set(left) == set(hn.DAEMON_EXAMPLES), sorted(left)
        assert all(hn.FINALIZER in m["metadata"].get("finalizers", []) for m in left.values())
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
        stuck = hn.msvcs(kubectl, ns)["http-daemon"]
        assert stuck["metadata"].get("deletionTimestamp"), stuck["metadata"]
        # ... until the finalizer is removed by hand (the hn.README's line).
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
        hn.uninstall(node_session, release, rns)
        hn.strip_finalizers(kubectl, ns)
        kubectl("delete", "managedservice", "--all", "-n", ns, "--wait=false", check=False)
        kubectl("delete", "secret", "demo-token", "-n", ns, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", rns, "--wait=false", check=False)


@pytest.mark.timeout(300)
def test_container_flavor_socket_host_network(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """docker.mode=socket + hostNetwork (the hn.README's line): web-container Ready on the
    node's engine; helm upgrade adopts it (same container, same pid); without hostNetwork
    the probe reaches the pod's own loopback and it stops being healthy."""
    hn.need_operator(node_session)
    busybox = hn.docker_busybox()
    if busybox is None:
        unavailable("no Docker engine with steward-test/busybox (hack/docker/ensure-dockerd.sh)")
    assert busybox is not None
    kubectl = node_kubectl
    line = hn.readme_line("helm install steward-docker ")
    release = rns = "steward-docker"
    ns = f"helm-docker-{uuid.uuid4().hex[:6]}"
    docs = hn.examples(ns, busybox)["web-container"]
    cname = f"steward-{ns}.web-container"
    with hn.namespaces(kubectl, ns):
        try:
            hn.sh(node_session, line, timeout=200)
            pod = hn.operator_pod(kubectl, rns, release)
            assert pod["spec"].get("hostNetwork") is True
            t0 = time.monotonic()
            hn.apply(kubectl, *docs)
            took = hn.wait_ready(kubectl, ns, ["web-container"], 120, (rns, release), t0)
            kubectl("wait", "-n", ns, "msvc/web-container", "--for=condition=Ready", "--timeout=5s")
            msvc = hn.msvcs(kubectl, ns)["web-container"]
            uri = msvc["status"]["endpoint"]["uri"]
            assert uri.startswith("http://127.0.0.1:"), uri
            with urllib.request.urlopen(uri + "/", timeout=5) as resp:
                assert b"hello from a container" in resp.read()
            attrs = json.loads(hn.docker("inspect", cname, check=True).stdout)[0]
            print(
                f"\nweb-container Ready in {took['web-container']}s at {uri} "
                f"(container {attrs['Id'][:12]}, pid {attrs['State']['Pid']})"
            )

            # helm upgrade rolls the pod: the new one adopts the running container.
            hn.upgrade(node_session, release, rns, "operator.logFormat=text")
            new = hn.operator_pod(kubectl, rns, release)
            assert new["metadata"]["uid"] != pod["metadata"]["uid"]
            logs = ""
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                logs = kubectl("logs", "-n", rns, new["metadata"]["name"], check=False).stdout
                if "web-container" in logs and hn.ready(hn.msvcs(kubectl, ns)["web-container"]):
                    break
                time.sleep(1)
            time.sleep(3)
            again = json.loads(hn.docker("inspect", cname, check=True).stdout)[0]
            assert again["Id"] == attrs["Id"], "the new operator pod replaced the container"
            assert again["State"]["Pid"] == attrs["State"]["Pid"]
            assert again["State"]["StartedAt"] == attrs["State"]["StartedAt"]
            assert again["RestartCount"] == attrs["RestartCount"]
            assert hn.ready(hn.msvcs(kubectl, ns)["web-container"])
            print("upgrade: container adopted (same id, pid, start time)")

            # Without hostNetwork the endpoint (the node's 127.0.0.1) is out of the pod's reach.
            hn.upgrade(node_session, release, rns, "hostNetwork=false")
            deadline = time.monotonic() + 90
            health: dict[str, Any] = {}
            while time.monotonic() < deadline:
                m = hn.msvcs(kubectl, ns)["web-container"]
                health = (m.get("status") or {}).get("health") or {}
                if not hn.ready(m) and health.get("state") not in (None, "healthy"):
                    break
                time.sleep(1)
            assert health.get("state") not in (None, "healthy"), health
            with urllib.request.urlopen(uri + "/", timeout=5) as resp:  # from the node: fine
                assert b"hello from a container" in resp.read()
            print(f"without hostNetwork: {health}")

            kubectl("delete", "-n", ns, "msvc/web-container", "--timeout=90s", timeout=100)
            assert hn.docker("inspect", cname).returncode != 0, "the finalizer left the container"
        except BaseException:
            print(hn.diagnose(kubectl, rns, release, ns))
            raise
        finally:
            hn.uninstall(node_session, release, rns)
            hn.remove_containers(ns)
            kubectl("delete", "namespace", rns, "--wait=false", check=False)


@pytest.mark.timeout(300)
def test_watch_namespaces_pod_token_metrics_service(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """watchNamespaces=[a] with the pod's ServiceAccount token: a Ready, b untouched;
    /healthz on the pod IP; /metrics through the metrics Service's ClusterIP from a pod."""
    hn.need_operator(node_session)
    kubectl = node_kubectl
    suffix = uuid.uuid4().hex[:6]
    a, b = f"helm-a-{suffix}", f"helm-b-{suffix}"
    release = rns = "steward-ns"
    doc = hn.examples("x")["http-daemon"][0]
    with hn.namespaces(kubectl, a, b, rns):
        try:
            hn.install(
                node_session,
                release,
                rns,
                f"watchNamespaces={{{a}}}",
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
                hn.apply(kubectl, obj)
            hn.wait_ready(kubectl, a, ["http-daemon"], 90, (rns, release))
            time.sleep(5)
            ignored = hn.msvcs(kubectl, b)["http-daemon"]
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
            pod = hn.operator_pod(kubectl, rns, release)
            uid = pod["metadata"]["uid"]
            pid = hn.operator_pid(uid)
            assert "KUBECONFIG" not in hn.environ(pid)
            assert not any(a.startswith("--kubeconfig") for a in hn.argv(pid))
            root = Path(f"/proc/{pid}/root")
            assert not (root / "tmp/.kube/config").exists()
            mounts = [
                ln.split()[4] for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            ]
            # (/var/run is a link to /run in the image: the runtime mounts the resolved path.)
            sa_dir = "/run/secrets/kubernetes.io/serviceaccount"
            assert {sa_dir, f"/var{sa_dir}"} & set(mounts), mounts
            assert hn.environ(pid).get("KUBERNETES_SERVICE_HOST")
            logs = kubectl("logs", "-n", rns, pod["metadata"]["name"]).stdout
            # Steward's login handler (k8s/login.py): no kubeconfig given, so in-cluster.
            assert "Activity 'login' succeeded." in logs, logs[-3000:]
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
            out = hn.http_from_pod(
                kubectl, a, hn.busybox_ref(node_session), "metrics-client", ip, 9090, "/metrics"
            )
            assert "# TYPE" in out and "steward" in out, out[-2000:]
            print(f"\nmetrics via ClusterIP {ip}: {len(out.splitlines())} lines")

            kubectl("delete", "-n", a, "msvc/http-daemon", "--timeout=60s", timeout=70)
        except BaseException:
            print(hn.diagnose(kubectl, rns, release, a))
            raise
        finally:
            hn.uninstall(node_session, release, rns)
