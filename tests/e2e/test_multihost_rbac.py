"""deploy/controller-rbac.yaml and deploy/agent-serve-rbac.yaml are enough, and no more.

The manifests are applied as shipped (with deploy/agent-rbac.yaml), a token of each
ServiceAccount is minted (TokenRequest), and the REAL processes run with kubeconfigs that
hold nothing but those tokens (the admin kubeconfig is not in their environment):
`steward controller --peering steward-controller` and `steward agent --node n1 --serve`.

Every path that needs a verb is taken: a daemon whose env comes from a Secret and a
ConfigMap is bound to n1, claimed and run (Ready); unbound by an admin, it is stopped and
released by the agent (a read, then releasedEpoch) and bound again by the controller; an
unschedulable service gets Scheduled=False and a FailedScheduling Event; one being deleted
that no host runs loses the agents' finalizer to the controller; the controller's peering
keep-alives land in its KopfPeering; its host monitor lists the agents' Leases all along;
deleting the daemon goes through the agent's finalizer.
Neither log may show a 403. Then each identity is refused, by `kubectl auth can-i` and by a
real attempt with its own token on an object that exists, what it must never do.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.support.kubectl import Runner, apply, get, install_crds, patch, token_kubeconfig
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.namespaces import delete_namespace
from tests.support.operator import read_log, start_steward
from tests.support.paths import CHART, MS_CRD_FILE, NODE_CRD_FILE, REPO
from tests.support.processes import alive, stop_process
from tests.support.waits import wait_for

DEPLOY = REPO / "deploy"
AGENT_RBAC = DEPLOY / "agent-rbac.yaml"
AGENT_SERVE_RBAC = DEPLOY / "agent-serve-rbac.yaml"
CONTROLLER_RBAC = DEPLOY / "controller-rbac.yaml"
MANIFESTS = (AGENT_RBAC, AGENT_SERVE_RBAC, CONTROLLER_RBAC)
KOPF_CRD_FILE = CHART / "crds" / "kopf-peering.yaml"
KOPF_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")

SYSTEM = "steward-system"
CONTROLLER_SA = "steward-controller"
AGENT_SA = "steward-agent"
PEERING = "steward-controller"
"""The name deploy/controller-rbac.yaml lets the controller patch."""
NODE = "n1"
LEASE = ("lease", f"steward-{NODE}", "-n", "kube-node-lease")
FINALIZER = "steward.dev/finalizer"
FAST = ["--renew-interval", "0.5", "--lease-duration", "3", "--status-interval", "0.5"]
TOKEN_VALUE = "multihost-rbac-token-4711"
GREETING = "hello-from-a-configmap"

# Log text that means a process hit RBAC: a 403, or kopf falling back after one.
PERMISSION_PROBLEM = re.compile(
    r"forbidden|not enough permissions|(?<![\d:.])403(?![\d:.])", re.IGNORECASE
)


# ---------------------------------------------------------------- identities
def _kopf_crds(kubectl: Runner) -> set[str]:
    names = kubectl("get", "crd", "-o", "name", timeout=90).stdout.split()
    return {n.split("/", 1)[1] for n in names} & set(KOPF_CRDS)


@pytest.fixture
def shipped_rbac(kubectl: Runner) -> Iterator[None]:
    """The CRDs (kopf's peering ones too, removed after if created here) and the three
    manifests as shipped, with the agent's ServiceAccount (agent-rbac.yaml has none)."""
    install_crds(kubectl, MS_CRD_FILE, NODE_CRD_FILE)
    before = _kopf_crds(kubectl)
    if before != set(KOPF_CRDS):  # create what is missing; leave what another install owns
        kubectl("create", "-f", str(KOPF_CRD_FILE), check=False)
    for crd in KOPF_CRDS:
        kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s", timeout=90)
    kubectl("create", "namespace", SYSTEM, check=False)
    try:
        kubectl("create", "serviceaccount", AGENT_SA, "-n", SYSTEM, check=False)
        for path in MANIFESTS:
            kubectl("apply", "-f", str(path))
        yield
    finally:
        for path in MANIFESTS:
            kubectl("delete", "-f", str(path), "--ignore-not-found", check=False)
        delete_namespace(kubectl, SYSTEM)
        created = sorted(_kopf_crds(kubectl) - before)
        if created:
            kubectl("delete", "crd", *created, "--wait=true", "--timeout=60s", timeout=90,
                    check=False)  # fmt: skip


def process_env(control_plane: Any, kubeconfig: Path) -> dict[str, str]:
    """The control plane's environment without the admin kubeconfig: $KUBECONFIG names a
    file that does not exist, so everything, kopf's login included, must use the
    ``--kubeconfig`` flag (``kubeconfig``) the processes are given."""
    env = {
        k: v
        for k, v in control_plane.env().items()
        if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")
    }
    env["KUBECONFIG"] = str(kubeconfig.with_name("not-this-one.kubeconfig"))
    return env


def permission_problems(log: Path) -> list[str]:
    return [line for line in read_log(log).splitlines() if PERMISSION_PROBLEM.search(line)]


def refused(
    kubectl: Runner,
    account: str,
    kubeconfig: Path,
    can_i: tuple[str, ...],
    attempt: tuple[str, ...],
    input: str | None = None,
) -> None:
    """``kubectl auth can-i CAN_I`` (as admin, impersonating ACCOUNT) says no, and the
    ATTEMPT itself, made with ACCOUNT's own token on an object that exists, is Forbidden."""
    user = f"system:serviceaccount:{SYSTEM}:{account}"
    answer = kubectl("auth", "can-i", *can_i, f"--as={user}", check=False).stdout.strip()
    assert answer == "no", (account, can_i, answer)
    out = kubectl(*attempt, input=input, check=False, extra_env={"KUBECONFIG": str(kubeconfig)})
    denied = "forbidden" in out.stderr.lower() and f'User "{user}"' in out.stderr
    assert out.returncode != 0 and denied, (account, attempt, out)


# ---------------------------------------------------------------- objects
def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def _placement(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict(((obj or {}).get("status") or {}).get("placement") or {})


def _maybe(kubectl: Runner, *args: str) -> dict[str, Any] | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _daemon(run: str) -> dict[str, Any]:
    spec = http_daemon_spec()
    spec["daemon"]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
    ]
    spec["placement"] = {"nodeSelector": {"e2e-run": run}}
    return spec


def _events(kubectl: Runner, namespace: str, name: str) -> dict[str, int]:
    """reason -> count of the Events of one object."""
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "-o", "json",
    )  # fmt: skip
    return {e["reason"]: int(e.get("count") or 1) for e in json.loads(out.stdout)["items"]}


# ---------------------------------------------------------------- the proof
def test_controller_and_serving_agent_with_only_the_shipped_rbac(
    control_plane: Any, kubectl: Runner, shipped_rbac: None, namespace: str, tmp_path: Path
) -> None:
    ns, run = namespace, "r" + uuid.uuid4().hex[:6]
    kubectl("create", "secret", "generic", "tok", "-n", ns, f"--from-literal=token={TOKEN_VALUE}")
    kubectl("create", "configmap", "cfg", "-n", ns, f"--from-literal=greeting={GREETING}")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    apply(kubectl, ns, peering)  # the admin's: kopf never creates it
    kubeconfigs = {
        account: token_kubeconfig(
            kubectl, control_plane, SYSTEM, account, tmp_path / f"{account}.conf"
        )
        for account in (CONTROLLER_SA, AGENT_SA)
    }
    for account, kubeconfig in kubeconfigs.items():
        out = kubectl("auth", "whoami", "-o", "json", extra_env={"KUBECONFIG": str(kubeconfig)})
        user = json.loads(out.stdout)["status"]["userInfo"]["username"]
        assert user == f"system:serviceaccount:{SYSTEM}:{account}"
    ctl_kc, agent_kc = kubeconfigs[CONTROLLER_SA], kubeconfigs[AGENT_SA]
    logs = {"controller": tmp_path / "controller.log", "agent": tmp_path / "agent.log"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pids: set[int] = set()
    timings: dict[str, float] = {}

    def web() -> dict[str, Any]:
        return get(kubectl, ns, "web")

    try:
        procs["controller"] = start_steward(
            ["controller", "-n", ns, "--peering", PEERING, "--kubeconfig", str(ctl_kc)],
            process_env(control_plane, ctl_kc),
            logs["controller"],
        )
        args = ["--state-dir", str(tmp_path / "agent-state"), "agent", "--node", NODE, "--serve"]
        args += ["-n", ns, "--kubeconfig", str(agent_kc), "--label", f"e2e-run={run}", *FAST]
        procs["agent"] = start_steward(args, process_env(control_plane, agent_kc), logs["agent"])
        wait_for(
            lambda: (
                _condition(_maybe(kubectl, "stewardnode", NODE), "Ready").get("status") == "True"
            ),
            timeout=60,
            what=f"StewardNode {NODE} Ready",
        )

        # Bound by the controller, claimed and run by the agent, env from a Secret and a
        # ConfigMap; the agent's kopf added its finalizer (a patch).
        start = time.monotonic()
        apply(kubectl, ns, msvc("web", _daemon(run)))
        wait_for(
            lambda: _placement(web()).get("nodeName") == NODE, timeout=60, what="web bound to n1"
        )
        timings["bound"] = time.monotonic() - start
        obj = wait_for(
            lambda: _condition(o := web(), "Ready").get("status") == "True" and o,
            timeout=90,
            what="web Ready",
        )
        timings["ready"] = time.monotonic() - start
        placed = _placement(obj)
        epoch = placed["epoch"]
        assert placed.get("reportedEpoch") == epoch, placed
        scheduled = _condition(obj, "Scheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("True", "Scheduled"), scheduled
        assert FINALIZER in obj["metadata"].get("finalizers", []), obj["metadata"]
        pid = int(obj["status"]["runtime"]["pid"])
        pids.add(pid)
        assert psutil.Process(pid).ppid() == procs["agent"].pid
        environ = psutil.Process(pid).environ()
        assert (environ["TOKEN"], environ["GREETING"]) == (TOKEN_VALUE, GREETING)
        reasons = wait_for(
            lambda: (r := _events(kubectl, ns, "web")) and {"Scheduled", "Started"} <= set(r) and r,
            timeout=30,
            what="the controller's and the agent's Events",
        )
        assert reasons["Scheduled"] == 1, reasons

        # Unbound by an admin: the agent stops its copy and releases the epoch it held (it
        # reads the service, then writes releasedEpoch); only then does the controller bind
        # it again (epoch + 2).
        start = time.monotonic()
        unbind = {"status": {"placement": {"nodeName": None, "epoch": epoch + 1,
                                           "reportedEpoch": None}}}  # fmt: skip
        patch(kubectl, ns, "web", unbind, subresource="status")
        wait_for(lambda: not alive(pid), timeout=60, what="the old copy stopped")
        obj = wait_for(
            lambda: (
                _placement(o := web()).get("epoch") == epoch + 2
                and _condition(o, "Ready").get("status") == "True"
                and int(o["status"]["runtime"].get("pid") or 0) not in (0, pid)
                and o
            ),
            timeout=90,
            what="web released, bound again and Ready",
        )
        timings["released, rebound, ready"] = time.monotonic() - start
        placed = _placement(obj)
        assert placed["nodeName"] == NODE, placed
        assert (placed["releasedEpoch"], placed["reportedEpoch"]) == (epoch, epoch + 2)
        pids.add(int(obj["status"]["runtime"]["pid"]))
        assert "Released" in _events(kubectl, ns, "web")

        # Unschedulable: Scheduled=False and a FailedScheduling Event. Deleted while no host
        # runs it: the controller removes the agents' finalizer (a patch).
        nowhere = msvc("nowhere", {**http_daemon_spec(), "placement": {"nodeSelector": {
            "e2e-run": run, "zone": "nowhere"}}})  # fmt: skip
        nowhere["metadata"]["finalizers"] = [FINALIZER]
        apply(kubectl, ns, nowhere)
        wait_for(
            lambda: (
                _condition(get(kubectl, ns, "nowhere"), "Scheduled").get("reason")
                == "Unschedulable"
            ),
            timeout=30,
            what="nowhere Unschedulable",
        )
        wait_for(
            lambda: "FailedScheduling" in _events(kubectl, ns, "nowhere"),
            timeout=30,
            what="FailedScheduling",
        )
        start = time.monotonic()
        kubectl("delete", "msvc", "nowhere", "-n", ns, "--wait=false")
        wait_for(
            lambda: _maybe(kubectl, "msvc", "nowhere", "-n", ns) is None,
            timeout=30,
            what="the agents' finalizer removed by the controller",
        )
        timings["finalizer removed"] = time.monotonic() - start

        # The controller's peering keep-alives, in its own KopfPeering.
        wait_for(
            lambda: (_maybe(kubectl, "kopfpeering", PEERING, "-n", ns) or {}).get("status"),
            timeout=30,
            what="the controller's keep-alive in its KopfPeering",
        )

        # What each identity must never do, on objects that exist.
        def controller(
            can_i: tuple[str, ...], attempt: tuple[str, ...], input: str | None = None
        ) -> None:
            refused(kubectl, CONTROLLER_SA, ctl_kc, can_i, attempt, input)

        controller(("get", "secrets", "-n", ns), ("get", "secret", "tok", "-n", ns))
        controller(("get", "configmaps", "-n", ns), ("get", "configmap", "cfg", "-n", ns))
        controller(
            ("delete", "managedservices.steward.dev", "-n", ns),
            ("delete", "msvc", "web", "-n", ns, "--wait=false"),
        )
        controller(  # cordon a host: the admin's
            ("patch", "stewardnodes.steward.dev"),
            ("patch", "stewardnode", NODE, "--type=merge", "-p", '{"spec":{"unschedulable":true}}'),
        )
        controller(  # register a host: the agent's (the controller only patches a lost
            ("create", "stewardnodes.steward.dev"),  # host's status to Ready=Unknown)
            ("create", "-f", "-"),
            yaml.safe_dump({"apiVersion": "steward.dev/v1alpha1", "kind": "StewardNode",
                            "metadata": {"name": f"forged-{run}"}}),
        )  # fmt: skip
        # The host monitor lists the Leases by label; it never reads one by name.
        controller(("get", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
                   ("get", *LEASE))  # fmt: skip
        controller(("delete", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
                   ("delete", *LEASE, "--wait=false"))  # fmt: skip
        controller(("list", "pods", "-A"), ("get", "pods", "-A"))

        def agent(
            can_i: tuple[str, ...], attempt: tuple[str, ...], input: str | None = None
        ) -> None:
            refused(kubectl, AGENT_SA, agent_kc, can_i, attempt, input)

        agent(
            ("delete", "managedservices.steward.dev", "-n", ns),
            ("delete", "msvc", "web", "-n", ns, "--wait=false"),
        )
        agent(
            ("create", "managedservices.steward.dev", "-n", ns),
            ("create", "-n", ns, "-f", "-"),
            yaml.safe_dump(msvc("intruder", _daemon(run))),
        )
        agent(("list", "secrets", "-n", ns), ("get", "secrets", "-n", ns))
        agent(
            ("create", "secrets", "-n", ns),
            ("create", "secret", "generic", "stolen", "-n", ns, "--from-literal=a=b"),
        )
        agent(  # pose as a controller peer (and pause it)
            ("patch", "kopfpeerings.kopf.dev", "-n", ns),
            ("patch", "kopfpeering", PEERING, "-n", ns, "--type=merge",
             "-p", '{"status":{"intruder":{"priority":100}}}'),
        )  # fmt: skip
        agent(
            ("delete", "stewardnodes.steward.dev"), ("delete", "stewardnode", NODE, "--wait=false")
        )
        # ... and nothing of the above happened.
        assert _condition(web(), "Ready").get("status") == "True"
        node = _maybe(kubectl, "stewardnode", NODE) or {}
        assert not (node.get("spec") or {}).get("unschedulable"), node
        assert _maybe(kubectl, *LEASE) is not None
        assert _maybe(kubectl, "msvc", "intruder", "-n", ns) is None
        assert _maybe(kubectl, "secret", "stolen", "-n", ns) is None

        # Deleted: through the agent's finalizer (its kopf removes it: a patch).
        last = int(web()["status"]["runtime"]["pid"])
        start = time.monotonic()
        kubectl("delete", "msvc", "web", "-n", ns, "--wait=true", "--timeout=60s", timeout=90)
        timings["deleted"] = time.monotonic() - start
        assert not alive(last)

        for name, log in logs.items():
            problems = permission_problems(log)
            assert not problems, f"{name} hit RBAC:\n" + "\n".join(p[:400] for p in problems[:5])
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {read_log(logs[name])[-2000:]}"
        print("timings:", ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    finally:
        try:
            kubectl("delete", "msvc", "--all", "-n", ns, "--wait=true", "--timeout=60s",
                    timeout=90, check=False)  # fmt: skip
        finally:
            for proc in procs.values():
                stop_process(proc)
            for pid in pids:  # a copy the agent left running (only if something failed)
                if alive(pid):
                    psutil.Process(pid).kill()
            left = kubectl("get", "msvc", "-n", ns, "-o", "name", check=False).stdout.split()
            for name in left:  # nobody removes their finalizers any more
                kubectl("patch", name, "-n", ns, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)  # fmt: skip
            kubectl("delete", "stewardnode", NODE, "--ignore-not-found", check=False)
            kubectl("delete", *LEASE, "--ignore-not-found", check=False)
            for name, log in logs.items():
                print(f"--- {name}\n{read_log(log)[-3000:]}")
