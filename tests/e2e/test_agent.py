"""`steward agent` registers its host as a StewardNode and keeps a Lease, on a real apiserver.

The agent is a real process with short timers. It creates its StewardNode with
its labels and reports addresses, capacity/allocatable and one condition per
runtime (the real Docker engine, the Terraform on PATH); it renews its Lease in
kube-node-lease from its own client; `kubectl get stewardnodes` shows the
printer columns. An agent whose Docker engine is unreachable stays a live host
(Ready, Lease renewed) with DockerReady=False. SIGTERM leaves Ready=False,
reason AgentStopped, and stops the renewals.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.kubectl import Runner, install_crds, token_kubeconfig
from tests.support.namespaces import delete_namespace
from tests.support.operator import read_log, start_steward
from tests.support.paths import CRDS, NODE_CRD_FILE
from tests.support.processes import stop_process
from tests.support.waits import wait_for

FAST = ["--renew-interval", "0.5", "--lease-duration", "3", "--status-interval", "0.5"]


@pytest.fixture
def node_crd(kubectl: Runner) -> None:
    install_crds(kubectl, NODE_CRD_FILE)


@pytest.fixture
def node_name(kubectl: Runner) -> Iterator[str]:
    name = f"host-{uuid.uuid4().hex[:8]}"
    yield name
    kubectl("delete", "stewardnode", name, "--ignore-not-found", check=False)
    kubectl(
        "delete",
        "lease",
        f"steward-{name}",
        "-n",
        "kube-node-lease",
        "--ignore-not-found",
        check=False,
    )


def start_steward_output(control_plane: Any, args: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "steward.cli", *args],
        env=control_plane.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def _node(kubectl: Runner, name: str) -> dict[str, Any] | None:
    out = kubectl("get", "stewardnode", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions", [])}


def _lease(kubectl: Runner, name: str) -> dict[str, Any]:
    """The host's Lease, waited for: the lease loop is its own thread (as in kubelet), so the
    StewardNode's conditions may be written before the first Lease is."""

    def get() -> dict[str, Any] | None:
        out = kubectl(
            "get", "lease", f"steward-{name}", "-n", "kube-node-lease", "-o", "json", check=False
        )
        if out.returncode != 0:
            assert "NotFound" in out.stderr, out.stderr
            return None
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    return wait_for(get, timeout=15, what=f"Lease steward-{name}")


def _renewed(lease: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))


def test_agent_registers_renews_and_says_goodbye(
    control_plane: Any, kubectl: Runner, node_crd: None, node_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    args = ["agent", "--node", node_name, "--address", "10.244.0.7", "--label", "zone=a"]
    args += ["--extended-resource", "example.com/gpu=2", "--reserved-memory", "1Gi", *FAST]
    proc = start_steward(args, control_plane.env(), log)
    try:
        obj = wait_for(
            lambda: (o := _node(kubectl, node_name)) and "TerraformReady" in _conditions(o) and o,
            timeout=30,
            what="the StewardNode with its conditions",
        )
        assert obj["metadata"]["labels"] == {"zone": "a"}
        st = obj["status"]
        assert {"type": "InternalIP", "address": "10.244.0.7"} in st["addresses"]
        assert st["capacity"]["example.com/gpu"] == "2" == st["allocatable"]["example.com/gpu"]
        assert st["capacity"]["services"] == "110"
        assert int(st["allocatable"]["memory"][:-2]) < int(st["capacity"]["memory"][:-2])
        conds = _conditions(obj)
        assert conds["Ready"]["status"] == "True", conds
        assert conds["DockerReady"]["status"] == "True", conds  # the real engine answers
        assert conds["TerraformReady"]["status"] == "True", conds
        assert st["agent"]["version"] and st["agent"]["bootId"]

        lease = _lease(kubectl, node_name)
        assert lease["spec"]["holderIdentity"] == node_name
        assert lease["spec"]["leaseDurationSeconds"] == 3
        owner = lease["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "StewardNode",
            node_name,
            obj["metadata"]["uid"],
        )
        first = _renewed(lease)
        wait_for(lambda: _renewed(_lease(kubectl, node_name)) > first, timeout=10, what="renewal")

        table = kubectl("get", "stewardnodes", node_name, "-o", "wide").stdout
        header = table.splitlines()[0].split()
        assert header[:8] == [
            "NAME",
            "READY",
            "SERVICES",
            "MAX",
            "CPU",
            "MEMORY",
            "DOCKER",
            "UNSCHEDULABLE",
        ], header
        assert "10.244.0.7" in table

        nodes = start_steward_output(control_plane, ["nodes"])
        row = next(line.split() for line in nodes.splitlines() if line.startswith(node_name))
        assert row[1] == "True" and row[6] == "True", nodes  # READY, DOCKER

        # Nothing changes: no status writes (the resourceVersion stays) while the Lease moves.
        version = _node(kubectl, node_name)["metadata"]["resourceVersion"]  # type: ignore[index]
        before = _renewed(_lease(kubectl, node_name))
        wait_for(lambda: _renewed(_lease(kubectl, node_name)) > before, timeout=10)
        assert _node(kubectl, node_name)["metadata"]["resourceVersion"] == version  # type: ignore[index]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, read_log(log)
        ready = _conditions(_node(kubectl, node_name))["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "AgentStopped")
        time.sleep(3.5)  # past the Lease's duration
        row = next(
            line.split()
            for line in start_steward_output(control_plane, ["nodes"]).splitlines()
            if line.startswith(node_name)
        )
        assert row[1] == "False", row  # it said goodbye: not merely Unknown
        last = _renewed(_lease(kubectl, node_name))
        time.sleep(1.5)  # three renew intervals
        assert _renewed(_lease(kubectl, node_name)) == last  # no renewals after the goodbye
    finally:
        stop_process(proc)
        print(read_log(log)[-3000:])


def test_an_unreachable_docker_engine_is_a_condition_not_a_lost_host(
    control_plane: Any, kubectl: Runner, node_crd: None, node_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    env = {**control_plane.env(), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = start_steward(["agent", "--node", node_name, *FAST], env, log)
    try:
        conds = wait_for(
            lambda: (c := _conditions(_node(kubectl, node_name))) and "DockerReady" in c and c,
            timeout=30,
            what="conditions",
        )
        assert conds["DockerReady"]["status"] == "False", conds
        assert conds["DockerReady"]["reason"] == "DockerUnavailable", conds
        assert conds["Ready"]["status"] == "True", conds
        first = _renewed(_lease(kubectl, node_name))
        wait_for(lambda: _renewed(_lease(kubectl, node_name)) > first, timeout=10, what="renewal")
    finally:
        stop_process(proc)
        print(read_log(log)[-3000:])


AGENT_RBAC = CRDS.parent / "deploy" / "agent-rbac.yaml"


def test_the_shipped_agent_rbac_is_enough_and_no_more(
    control_plane: Any, kubectl: Runner, node_crd: None, node_name: str, tmp_path: Path
) -> None:
    """deploy/agent-rbac.yaml, as a host's kubeconfig would use it: a ServiceAccount token."""
    kubectl("create", "namespace", "steward-system", check=False)
    kubectl("apply", "-f", str(AGENT_RBAC))
    kubectl("create", "serviceaccount", "steward-agent", "-n", "steward-system", check=False)
    kubeconfig = token_kubeconfig(
        kubectl, control_plane, "steward-system", "steward-agent", tmp_path / "agent.kubeconfig"
    )
    log = tmp_path / "agent.log"
    env = {k: v for k, v in control_plane.env().items() if k != "KUBECONFIG"}
    proc = start_steward(
        ["agent", "--node", node_name, "--kubeconfig", str(kubeconfig), *FAST], env, log
    )
    try:
        wait_for(
            lambda: _conditions(_node(kubectl, node_name)).get("Ready", {}).get("status") == "True",
            timeout=30,
            what="Ready with the agent's own token",
        )
        first = _renewed(_lease(kubectl, node_name))
        wait_for(lambda: _renewed(_lease(kubectl, node_name)) > first, timeout=10, what="renewal")
        who = "--as=system:serviceaccount:steward-system:steward-agent"
        for verb, resource in [
            ("list", "secrets"),
            ("get", "managedservices.steward.dev"),
            ("delete", "stewardnodes.steward.dev"),
        ]:
            can = kubectl("auth", "can-i", verb, resource, "-A", who, check=False).stdout.strip()
            assert can == "no", (verb, resource, can)
    finally:
        stop_process(proc)
        print(read_log(log)[-3000:])
        kubectl("delete", "-f", str(AGENT_RBAC), "--ignore-not-found", check=False)
        delete_namespace(kubectl, "steward-system")


def test_a_status_write_to_a_silent_apiserver_gives_up(tmp_path: Path) -> None:
    """A cut link (the server accepts, then never answers) must not hold the status loop
    or the goodbye at SIGTERM: the write fails within its read timeout."""
    import socket

    from steward.api.node import StewardNodeStatus
    from steward.engine.nodes import NodeSettings
    from steward.k8s.agent import STATUS_TIMEOUT, Agent, AgentOptions

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        agent = Agent(AgentOptions(NodeSettings(name="silent"), kubeconfig=str(kubeconfig)))
        began = time.monotonic()
        with pytest.raises(Exception, match=r"(?i)timed? ?out"):
            agent._write_status(StewardNodeStatus())
        took = time.monotonic() - began
    assert took < STATUS_TIMEOUT[1] + 5, took  # without a timeout it would wait forever
