"""The chart's agent DaemonSet on a real kubelet node (issue 16, item 1).

``helm install --set agent.enabled=true`` (short Lease timers), then, seen from
the cluster and from the host:

* the DaemonSet's pod runs on the kubelet node, as uid 65532, with
  ``steward agent --node <the node's name>`` (the downward API's spec.nodeName,
  expanded by the kubelet);
* a StewardNode named like the kubelet node exists and becomes Ready, with the
  pod's IP as its InternalIP; its Lease ``kube-node-lease/steward-<node>`` is
  held by it and renewed (renewTime advances);
* the agent's ServiceAccount holds deploy/agent-rbac.yaml's rules and no more:
  ``kubectl auth can-i --as=system:serviceaccount:...`` says yes to what the agent
  writes and no to ManagedServices, Secrets, deleting StewardNodes and Leases
  elsewhere;
* stopped as NOTES.txt says (the DaemonSet deleted with ``--cascade=foreground``),
  the agent says goodbye: Ready=False, AgentStopped, and its Lease is renewed no
  more; ``helm upgrade`` brings the DaemonSet back and the new pod takes the same
  StewardNode over;
* a plain ``helm uninstall`` removes the agent's pod, ServiceAccount and RBAC;
  the StewardNode and its Lease stay (the admin's, like the CRD). Helm deletes
  the RBAC in the same pass as the DaemonSet, before the pod gets SIGTERM, so
  the goodbye can be refused: then ``steward nodes`` says READY Unknown once the
  Lease ran out. Either way the node is no longer Ready, and the test says which.

Addresses: pod IPs on the node's bridge only. The release, its namespace, the
StewardNode and its Lease are removed by name.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from steward.k8s.nodes import node_rows
from tests.support import helm_node as hn
from tests.support.kubectl import Runner, get_or_none
from tests.support.node import NodeSession
from tests.support.paths import REPO
from tests.support.waits import wait_for

AGENT_RBAC = REPO / "deploy" / "agent-rbac.yaml"
LEASE_NS = "kube-node-lease"
LEASE_SECONDS, RENEW_SECONDS = 8, 2
AGENT_UID = 65532  # values.yaml agent.podSecurityContext

Rule = tuple[str, str, str]


def _rules(role: dict[str, Any]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _shipped_rules() -> dict[str, set[Rule]]:
    """deploy/agent-rbac.yaml's rules by kind (ClusterRole, Role)."""
    docs = [d for d in yaml.safe_load_all(AGENT_RBAC.read_text()) if d]
    return {d["kind"]: _rules(d) for d in docs if d["kind"] in ("ClusterRole", "Role")}


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _renewed(lease: dict[str, Any] | None) -> datetime:
    assert lease is not None
    return datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))


def _agent_pods(kubectl: Runner, ns: str, release: str) -> list[dict[str, Any]]:
    sel = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=agent"
    out = kubectl("get", "pods", "-n", ns, "-l", sel, "-o", "json").stdout
    return json.loads(out)["items"]  # type: ignore[no-any-return]


def _wait(pred: Any, timeout: float, what: str) -> Any:
    return wait_for(pred, timeout, 0.5, what)


def _stewardnode_when(kubectl: Runner, node: str, key: str, value: str, what: str) -> Any:
    """Until the StewardNode ``node`` exists with ``key`` of its Ready condition ``value``."""
    return _wait(
        lambda: (
            (n := get_or_none(kubectl, "stewardnode", node))
            and _conditions(n).get("Ready", {}).get(key) == value
            and n
        ),
        60,
        what,
    )


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _pod_rss_mb(pod_uid: str) -> float:
    stat = (hn.pod_cgroup(pod_uid) / "memory.stat").read_text().splitlines()
    values = dict(line.split() for line in stat)
    return round(int(values.get("total_rss", values.get("anon", 0))) / 2**20, 1)


@pytest.mark.timeout(360)
def test_agent_daemonset_registers_the_node_least_privilege_and_goodbye(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """agent.enabled=true: the DaemonSet pod registers the kubelet node as a Ready
    StewardNode and renews its Lease; its ServiceAccount can do what the agent does and
    nothing more; stopped as NOTES.txt says, the node is Ready=False, AgentStopped."""
    hn.need_operator(node_session)
    info, kubectl = node_session.info, node_kubectl
    node = info.node_name
    lease = f"steward-{node}"
    suffix = uuid.uuid4().hex[:6]
    release = rns = f"agent-{suffix}"
    agent = f"{release}-steward-agent"
    who = f"--as=system:serviceaccount:{rns}:{agent}"

    def diag() -> str:
        out = [kubectl("get", "pods", "-n", rns, "-o", "wide", check=False).stdout]
        out.append(kubectl("get", "events", "-n", rns, check=False).stdout[-3000:])
        logs = kubectl("logs", "-n", rns, f"ds/{agent}", "--tail=60", check=False)
        out.append(f"--- agent logs ---\n{logs.stdout[-5000:]}{logs.stderr[-1000:]}")
        out.append(kubectl("get", "stewardnode", node, "-o", "yaml", check=False).stdout)
        return "\n".join(out)

    # A StewardNode of this name left by another test would hide a failed registration.
    kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
    kubectl("delete", "lease", lease, "-n", LEASE_NS, "--ignore-not-found", check=False)
    with hn.namespaces(kubectl, rns):
        try:
            t0 = time.monotonic()
            hn.helm(
                node_session,
                "install",
                release,
                str(hn.CHART),
                "-n",
                rns,
                "--wait",
                "--timeout",
                "150s",
                "--set",
                "operator.logFormat=text",
                "--set",
                "agent.enabled=true",
                "--set",
                f"agent.leaseDurationSeconds={LEASE_SECONDS}",
                "--set",
                f"agent.renewIntervalSeconds={RENEW_SECONDS}",
                "--set",
                "agent.labels.zone=test",
            )
            installed = time.monotonic() - t0
            kubectl("get", "crd", "stewardnodes.steward.dev")  # from the chart's crds/

            # --- the DaemonSet's pod, on the kubelet node, with the node's name.
            pods = _wait(
                lambda: [
                    p
                    for p in _agent_pods(kubectl, rns, release)
                    if p["status"].get("phase") == "Running"
                ],
                60,
                "agent pod Running",
            )
            assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
            pod = pods[0]
            assert pod["spec"]["nodeName"] == node
            assert pod["spec"]["serviceAccountName"] == agent
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
            (container,) = pod["spec"]["containers"]
            env = {e["name"]: e.get("valueFrom") for e in container["env"]}
            assert env["NODE_NAME"] == {
                "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}
            }
            assert "livenessProbe" not in container and "readinessProbe" not in container
            pod_uid, pod_ip = pod["metadata"]["uid"], pod["status"]["podIP"]
            pids = [p for p in hn.pod_pids(pod_uid) if "agent" in hn.argv(p)]
            assert len(pids) == 1, {p: hn.argv(p) for p in hn.pod_pids(pod_uid)}
            argv = hn.argv(pids[0])
            assert f"--node={node}" in argv and f"--address={pod_ip}" in argv, argv
            assert _uid_of(pids[0]) == AGENT_UID
            assert not any(k.startswith("DOCKER_HOST") for k in hn.environ(pids[0]))

            # --- a StewardNode named like the kubelet node, Ready.
            t_pod = time.monotonic()
            stewardnode = _stewardnode_when(kubectl, node, "status", "True", "StewardNode Ready")
            ready_after = time.monotonic() - t_pod
            assert stewardnode["metadata"]["labels"] == {"zone": "test"}
            addresses = stewardnode["status"]["addresses"]
            assert {"type": "InternalIP", "address": pod_ip} in addresses, addresses
            assert {"type": "Hostname", "address": node} in addresses, addresses
            assert stewardnode["status"]["agent"]["hostname"] == pod["metadata"]["name"]
            conditions = _conditions(stewardnode)
            assert conditions["DockerReady"]["status"] == "False", conditions  # no socket
            runtimes = {t: (c["status"], c["reason"]) for t, c in conditions.items()}

            # --- its Lease, held by it and renewed.
            held = _wait(lambda: get_or_none(kubectl, "lease", lease, "-n", LEASE_NS), 30, "Lease")
            assert held["spec"]["holderIdentity"] == node
            assert held["spec"]["leaseDurationSeconds"] == LEASE_SECONDS
            owner = held["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["uid"]) == ("StewardNode", stewardnode["metadata"]["uid"])
            first = _renewed(held)
            _wait(
                lambda: _renewed(get_or_none(kubectl, "lease", lease, "-n", LEASE_NS)) > first,
                RENEW_SECONDS * 3,
                "Lease renewed",
            )
            rss = _pod_rss_mb(pod_uid)
            print(
                f"\nhelm install --wait {installed:.1f}s; StewardNode {node} Ready "
                f"{ready_after:.1f}s after the pod ran; Lease renewed every {RENEW_SECONDS}s; "
                f"agent pod RSS {rss} MB; conditions {runtimes}"
            )

            # --- its ServiceAccount: deploy/agent-rbac.yaml's rules, no more.
            shipped = _shipped_rules()
            cluster_role = get_or_none(kubectl, "clusterrole", f"{rns}-{agent}")
            role = get_or_none(kubectl, "role", f"{rns}-{agent}", "-n", LEASE_NS)
            assert cluster_role and _rules(cluster_role) == shipped["ClusterRole"]
            assert role and _rules(role) == shipped["Role"]

            def can(*args: str) -> str:
                return kubectl("auth", "can-i", *args, who, check=False).stdout.strip()

            allowed = [
                ("create", "stewardnodes.steward.dev"),
                ("patch", "stewardnodes.steward.dev"),
                ("update", "stewardnodes.steward.dev", "--subresource=status"),
                ("patch", "stewardnodes.steward.dev", "--subresource=status"),
                ("get", "leases.coordination.k8s.io", "-n", LEASE_NS),
                ("create", "leases.coordination.k8s.io", "-n", LEASE_NS),
                ("update", "leases.coordination.k8s.io", "-n", LEASE_NS),
            ]
            refused = [
                ("delete", "managedservices.steward.dev", "-A"),
                ("get", "managedservices.steward.dev", "-A"),
                ("patch", "managedservices.steward.dev", "--subresource=status", "-A"),
                ("get", "secrets", "-n", rns),
                ("list", "secrets", "-A"),
                ("delete", "stewardnodes.steward.dev"),
                ("update", "stewardnodes.steward.dev"),
                ("delete", "leases.coordination.k8s.io", "-n", LEASE_NS),
                ("list", "leases.coordination.k8s.io", "-n", LEASE_NS),
                ("create", "leases.coordination.k8s.io", "-n", rns),
                ("update", "leases.coordination.k8s.io", "-n", "kube-system"),
                ("get", "stewardpolicies.steward.dev"),
                ("list", "pods", "-A"),
                ("create", "pods", "-n", rns),
            ]
            answers = {" ".join(a): can(*a) for a in allowed + refused}
            assert all(answers[" ".join(a)] == "yes" for a in allowed), answers
            assert all(answers[" ".join(a)] == "no" for a in refused), answers
            print(f"can-i as {agent}: {answers}")

            # --- stopping the agents as NOTES.txt says: each says goodbye.
            t_stop = time.monotonic()
            kubectl(
                "delete",
                "daemonset",
                agent,
                "-n",
                rns,
                "--cascade=foreground",
                "--timeout=90s",
                timeout=100,
            )
            assert not _agent_pods(kubectl, rns, release)
            ready = _conditions(get_or_none(kubectl, "stewardnode", node))["Ready"]
            assert (ready["status"], ready["reason"]) == ("False", "AgentStopped"), ready
            print(
                f"agents stopped (foreground delete) in {time.monotonic() - t_stop:.1f}s: {ready}"
            )
            last = _renewed(get_or_none(kubectl, "lease", lease, "-n", LEASE_NS))
            time.sleep(RENEW_SECONDS * 2)
            assert _renewed(get_or_none(kubectl, "lease", lease, "-n", LEASE_NS)) == last

            # --- helm upgrade brings the DaemonSet back: the agent takes the node over.
            hn.helm(
                node_session,
                "upgrade",
                release,
                str(hn.CHART),
                "-n",
                rns,
                "--reuse-values",
                "--wait",
                "--timeout",
                "150s",
            )
            again = _stewardnode_when(
                kubectl, node, "reason", "AgentReady", "StewardNode Ready again"
            )
            assert again["metadata"]["uid"] == stewardnode["metadata"]["uid"]
            (new_pod,) = _agent_pods(kubectl, rns, release)
            assert new_pod["metadata"]["uid"] != pod_uid

            # --- plain helm uninstall: the agent's pod, identity and RBAC go; the StewardNode
            # and its Lease stay (the admin's), and the Lease is renewed no more. Helm deletes
            # the RBAC in the same pass as the DaemonSet, before its pods stop: the goodbye
            # may be refused, and then the node is lost once its Lease runs out.
            t_un = time.monotonic()
            hn.helm(node_session, "uninstall", release, "-n", rns, "--wait", "--timeout", "90s")
            _wait(lambda: not _agent_pods(kubectl, rns, release), 60, "agent pod gone")
            gone = time.monotonic() - t_un
            for what in (
                ("daemonset", agent, "-n", rns),
                ("serviceaccount", agent, "-n", rns),
                ("clusterrole", f"{rns}-{agent}"),
                ("clusterrolebinding", f"{rns}-{agent}"),
                ("role", f"{rns}-{agent}", "-n", LEASE_NS),
                ("rolebinding", f"{rns}-{agent}", "-n", LEASE_NS),
            ):
                assert get_or_none(kubectl, *what) is None, f"{what} left after helm uninstall"
            assert can("patch", "stewardnodes.steward.dev", "--subresource=status") == "no"
            last = _renewed(get_or_none(kubectl, "lease", lease, "-n", LEASE_NS))
            ready = _conditions(get_or_none(kubectl, "stewardnode", node))["Ready"]

            def judged() -> str:
                (row,) = [r for r in node_rows(str(info.kubeconfig)) if r[0] == node]
                return row[1] if row[1] != "True" else ""

            verdict = _wait(judged, LEASE_SECONDS * 3, "StewardNode not Ready")
            assert _renewed(get_or_none(kubectl, "lease", lease, "-n", LEASE_NS)) == last
            if ready["status"] == "False":
                assert (ready["reason"], verdict) == ("AgentStopped", "False"), ready
            else:
                assert verdict == "Unknown", (ready, verdict)
            print(
                f"helm uninstall: agent pod gone in {gone:.1f}s; goodbye "
                f"{'written' if ready['status'] == 'False' else 'refused (RBAC already gone)'}; "
                f"`steward nodes` READY {verdict} {time.monotonic() - t_un:.1f}s after uninstall"
            )
        except BaseException:
            print(diag())
            raise
        finally:
            hn.uninstall(node_session, release, rns)
            kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
            kubectl("delete", "lease", lease, "-n", LEASE_NS, "--ignore-not-found", check=False)
