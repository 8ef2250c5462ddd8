"""The chart in multi-host mode on a real kubelet node (issue 16, item 1): ``agent.serve``.

``helm install --set agent.enabled=true --set agent.serve=true`` (short Lease timers):
the Deployment runs ``steward controller`` and the DaemonSet ``steward agent --serve``.
Then a tenant's daemon ManagedService with ``endpoint.expose: Cluster``:

* the controller binds it to the kubelet node's StewardNode, and it runs in the agent's
  pod (not the controller's), sandboxed as the chart's defaults say: its own uid from
  the range, no ServiceAccount token it can read, no ``KUBERNETES_*``;
* its Service and EndpointSlice (the agent pod's IP) are the controller's, and a pod
  reaches it through the ClusterIP;
* ``steward logs`` from this host, as a ServiceAccount of the tenant's namespace
  granted ``managedservices/log``, reads it through the agent's log endpoint; one without
  that right gets 403;
* deleted, its process, Service and EndpointSlice go.

Addresses: pod and ClusterIP addresses on the node's bridge only. The release, its
namespace, the tenant namespace, the StewardNode and its Lease are removed by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import helm_node as hn
from tests.support.kubectl import Runner, get_or_none, log_reader, token_kubeconfig
from tests.support.node import NodeSession
from tests.support.paths import REPO
from tests.support.sandbox_probe import PROBE, TOKEN, report_of, uid_of
from tests.support.waits import wait_for

LEASE_NS = "kube-node-lease"
UID_START, UID_COUNT = 1879048192, 65536  # values.yaml tenancy.sandbox.uidRange
PORT = 18182
NAME = "probe"


def _pods(kubectl: Runner, ns: str, release: str, component: str | None) -> list[dict[str, Any]]:
    sel = f"app.kubernetes.io/instance={release}"
    sel += (
        f",app.kubernetes.io/component={component}"
        if component
        else ",!app.kubernetes.io/component"
    )
    items = json.loads(kubectl("get", "pods", "-n", ns, "-l", sel, "-o", "json").stdout)["items"]
    return [p for p in items if p["status"].get("phase") == "Running"]


@pytest.mark.timeout(420)
def test_controller_and_serving_agents_run_a_tenant_service_on_the_node(
    node_session: NodeSession, node_kubectl: Runner, tmp_path: Path
) -> None:
    hn.need_operator(node_session)
    info, kubectl = node_session.info, node_kubectl
    node, busybox = info.node_name, hn.busybox_ref(node_session)
    suffix = uuid.uuid4().hex[:6]
    release = rns = f"serve-{suffix}"
    tenant = f"team-{suffix}"

    def diag() -> str:
        out = [kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
        for what in (f"deploy/{release}-steward", f"ds/{release}-steward-agent"):
            logs = kubectl("logs", "-n", rns, what, "--tail=60", check=False)
            out.append(f"--- {what} ---\n{logs.stdout[-5000:]}{logs.stderr[-1000:]}")
        out.append(kubectl("get", "msvc", "-n", tenant, "-o", "yaml", check=False).stdout[-4000:])
        out.append(kubectl("get", "stewardnode", node, "-o", "yaml", check=False).stdout[-3000:])
        return "\n".join(out)

    kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
    kubectl("delete", "lease", f"steward-{node}", "-n", LEASE_NS, "--ignore-not-found", check=False)
    with hn.namespaces(kubectl, rns, tenant):
        try:
            t0 = time.monotonic()
            hn.helm(node_session, "install", release, str(hn.CHART), "-n", rns, "--wait",
                    "--timeout", "150s", "--set", "operator.logFormat=text",
                    "--set", "agent.enabled=true", "--set", "agent.serve=true",
                    "--set", "agent.leaseDurationSeconds=8",
                    "--set", "agent.renewIntervalSeconds=2")  # fmt: skip
            installed = time.monotonic() - t0
            kubectl("create", "clusterrole", "e2e-serve-nodes", "--verb=get",
                    "--resource=stewardnodes.steward.dev")  # fmt: skip

            # --- the Deployment is the controller; the DaemonSet's pod the runner.
            (ctl_pod,) = wait_for(lambda: _pods(kubectl, rns, release, None), 60, 0.5,
                                  "controller pod Running")  # fmt: skip
            (agent_pod,) = wait_for(lambda: _pods(kubectl, rns, release, "agent"), 60, 0.5,
                                    "agent pod Running")  # fmt: skip
            ctl_argv = [hn.argv(p) for p in hn.pod_pids(ctl_pod["metadata"]["uid"])]
            assert any("controller" in a for a in ctl_argv), ctl_argv
            agent_uid, agent_ip = agent_pod["metadata"]["uid"], agent_pod["status"]["podIP"]
            assert agent_pod["spec"]["nodeName"] == node
            wait_for(
                lambda: any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in ((get_or_none(kubectl, "stewardnode", node) or {}).get("status") or {})
                    .get("conditions", [])
                ),
                60, 0.5, "StewardNode Ready",
            )  # fmt: skip

            # --- a tenant's service, exposed to the cluster.
            log_reader(kubectl, tenant, "reader", True, "e2e-serve-nodes")
            log_reader(kubectl, tenant, "peeker", False, "e2e-serve-nodes")
            msvc = {
                "apiVersion": "steward.dev/v1alpha1",
                "kind": "ManagedService",
                "metadata": {"name": NAME, "namespace": tenant},
                "spec": {
                    "daemon": {
                        "command": ["/usr/bin/python3", "-c", PROBE, "$(PORT)", "$(HOST_IP)"]
                    },
                    "endpoint": {
                        "protocol": "http",
                        "port": PORT,
                        "expose": "Cluster",
                        "healthCheck": {"http": {"path": "/"}},
                    },
                },
            }
            t_apply = time.monotonic()
            hn.apply(kubectl, msvc)
            ready_after = hn.wait_ready(kubectl, tenant, [NAME], 120, (rns, release), t_apply)
            obj = get_or_none(kubectl, "msvc", NAME, "-n", tenant)
            assert obj is not None
            status = obj["status"]
            assert status["placement"]["nodeName"] == node, status
            assert status["endpoint"]["uri"] == f"http://{NAME}.{tenant}.svc:{PORT}", status
            assert status["endpoint"]["hostUri"] == f"http://{agent_ip}:{PORT}", status

            # --- it runs in the agent's pod, sandboxed; nothing of it in the controller's.
            uid = status["runtime"]["uid"]
            assert UID_START <= uid < UID_START + UID_COUNT, status["runtime"]
            [pid] = [p for p in hn.pod_pids(agent_uid)
                     if hn.argv(p)[:2] == ["/usr/bin/python3", "-c"]]  # fmt: skip
            assert uid_of(pid) == (uid, uid, uid, uid)
            assert not [p for p in hn.pod_pids(ctl_pod["metadata"]["uid"])
                        if hn.argv(p)[:2] == ["/usr/bin/python3", "-c"]]  # fmt: skip
            report = report_of(pid)
            assert report[TOKEN] == "Permission denied", report
            assert not [k for k in report["env"] if k.startswith("KUBERNETES_")], report

            # --- the controller's Service and EndpointSlice; a pod reaches it by ClusterIP.
            svc = get_or_none(kubectl, "service", NAME, "-n", tenant)
            assert svc is not None and "selector" not in svc["spec"], svc
            slices = json.loads(
                kubectl(
                    "get",
                    "endpointslices",
                    "-n",
                    tenant,
                    "-l",
                    f"kubernetes.io/service-name={NAME}",
                    "-o",
                    "json",
                ).stdout
            )
            [eps] = slices["items"]
            assert eps["endpoints"][0]["addresses"] == [agent_ip], eps
            assert eps["endpoints"][0]["conditions"]["ready"] is True, eps
            got = hn.http_from_pod(kubectl, tenant, busybox, "client", svc["spec"]["clusterIP"],
                                   PORT, "/report.json")  # fmt: skip
            assert f'"uid": {uid}' in got, got

            # --- steward logs from this host, through the agent's endpoint, as the tenant.
            env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

            def logs(account: str) -> subprocess.CompletedProcess[str]:
                conf = token_kubeconfig(kubectl, info.control_plane, tenant, account,
                                        tmp_path / f"{account}.conf")  # fmt: skip
                argv = [sys.executable, "-m", "steward.cli", "--state-dir",
                        str(tmp_path / "none"), "logs", NAME, "-n", tenant,
                        "--kubeconfig", str(conf), "--tail", "5"]  # fmt: skip
                return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True,
                                      timeout=30, check=False)  # fmt: skip

            read = logs("reader")
            assert read.returncode == 0 and "report" in read.stdout, read
            denied = logs("peeker")
            assert denied.returncode == 1 and "answered 403" in denied.stderr, denied

            # --- deleted: its process, Service and EndpointSlice go.
            kubectl("delete", "msvc", NAME, "-n", tenant, "--timeout=60s", timeout=70)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, 0.5, "daemon gone")
            wait_for(lambda: get_or_none(kubectl, "service", NAME, "-n", tenant) is None, 30, 0.5,
                     "Service deleted")  # fmt: skip
            print(
                f"\nhelm install --wait {installed:.1f}s; {NAME} Ready {ready_after[NAME]}s "
                f"after apply, on {node} as uid {uid}; ClusterIP {svc['spec']['clusterIP']} -> "
                f"{agent_ip}:{PORT}; logs through the agent: {len(read.stdout.splitlines())} "
                "lines, 403 without the log right"
            )
        except BaseException:
            print(diag())
            raise
        finally:
            for account in ("reader", "peeker"):
                kubectl("delete", "clusterrolebinding", f"{tenant}-{account}", check=False)
            kubectl("delete", "clusterrole", "e2e-serve-nodes", check=False)
            kubectl("delete", "msvc", NAME, "-n", tenant, "--ignore-not-found", "--timeout=60s",
                    check=False, timeout=70)  # fmt: skip
            hn.uninstall(node_session, release, rns)
            kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
            kubectl("delete", "lease", f"steward-{node}", "-n", LEASE_NS, "--ignore-not-found",
                    check=False)  # fmt: skip
