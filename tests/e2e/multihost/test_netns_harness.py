"""The multi-host harness itself: three `steward agent`s, each in its own network namespace.

Each agent is a real process started through ``ip netns exec`` (which execs it in place:
its PID is the agent's own, and it is stopped by that PID) with short timers, talking to
the apiserver on the bridge address. Each registers its StewardNode, with its namespace's
address, and renews its Lease. The namespaces are isolated: a host's 127.0.0.1 is its
own, so etcd's port on the root namespace's loopback is refused there. Host ``a`` is cut
off the bridge: its Lease stops at once while ``b`` and ``c`` go on renewing; healed, it
renews again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.multihost import MultiHost
from tests.support.operator import read_log
from tests.support.paths import REPO
from tests.support.processes import stop_process
from tests.support.waits import wait_for

FAST = ["--renew-interval", "0.5", "--lease-duration", "3", "--status-interval", "0.5"]
RENEW_INTERVAL = 0.5


def node_name(host: str) -> str:
    return f"host-{host}"


@pytest.fixture(scope="module")
def agents(
    netlab_cluster: MultiHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One `steward agent` per host, inside its namespace; stopped by PID afterwards."""
    lab, info = netlab_cluster.lab, netlab_cluster.control_plane
    root = tmp_path_factory.mktemp("agents")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for host in netlab_cluster.hosts:
            state = root / host / "state"
            state.mkdir(parents=True)
            logs[host] = root / host / "agent.log"
            argv = [sys.executable, "-m", "steward.cli", "--state-dir", str(state), "agent"]
            argv += ["--node", node_name(host), "--kubeconfig", str(netlab_cluster.kubeconfig)]
            argv += ["--address", lab.address(host), *FAST]
            with open(logs[host], "ab") as out:
                procs[host] = subprocess.Popen(
                    lab.argv(host, argv),
                    env=info.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
        yield procs
    finally:
        for proc in procs.values():
            stop_process(proc)
        for host, log in logs.items():
            print(f"--- agent {host} ---\n{read_log(log)[-2000:]}")


def _renewals(mh: MultiHost) -> dict[str, datetime]:
    """renewTime of each host's Lease (hosts without one yet are missing)."""
    out = mh.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json", timeout=20)
    times = {}
    for lease in json.loads(out.stdout)["items"]:
        name, renew = lease["metadata"]["name"], lease["spec"].get("renewTime")
        for host in mh.hosts:
            if name == f"steward-{node_name(host)}" and renew:
                times[host] = datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return times


def _nodes(mh: MultiHost) -> dict[str, dict[str, object]]:
    out = mh.kubectl("get", "stewardnodes", "-o", "json", timeout=20)
    return {o["metadata"]["name"]: o for o in json.loads(out.stdout)["items"]}


def _all_leases(mh: MultiHost) -> dict[str, datetime]:
    """Until every host has a Lease: their renewTimes."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (r := _renewals(mh)) and len(r) == len(mh.hosts) and r,
        timeout=15,
        what="three Leases",
    )


def _all_renewed_after(mh: MultiHost, since: dict[str, datetime], what: str) -> None:
    """Until every host's Lease is renewed after its time in ``since``."""
    wait_for(
        lambda: (r := _renewals(mh)) and all(r[h] > since[h] for h in mh.hosts),
        timeout=10,
        what=what,
    )


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _wait_exec(pid: int, executable: str, what: str) -> None:
    wait_for(lambda: _argv0(pid) == executable, timeout=10, step=0.05, what=what)


def _ready(obj: dict[str, object] | None) -> bool:
    status = (obj or {}).get("status") or {}
    assert isinstance(status, dict)
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def test_each_host_registers_and_renews_from_its_namespace(
    netlab_cluster: MultiHost, agents: dict[str, subprocess.Popen[bytes]]
) -> None:
    mh, lab = netlab_cluster, netlab_cluster.lab
    for host, proc in agents.items():
        # ip netns exec execs the agent in place (once it has entered the namespace): the
        # PID we hold, and stop, is the agent's own.
        _wait_exec(proc.pid, sys.executable, what=f"agent {host} exec'd by ip netns exec")
        assert proc.pid in lab.pids(host), (host, lab.pids(host))

    nodes = wait_for(
        lambda: (n := _nodes(mh)) and all(_ready(n.get(node_name(h))) for h in mh.hosts) and n,
        timeout=30,
        step=0.3,
        what="three Ready StewardNodes",
    )
    for host in mh.hosts:
        status = nodes[node_name(host)]["status"]
        assert {"type": "InternalIP", "address": lab.address(host)} in status["addresses"]

    _all_renewed_after(mh, _all_leases(mh), "every Lease renewed")
    for host, proc in agents.items():
        assert proc.poll() is None, f"agent {host} exited with {proc.returncode}"


def test_a_host_namespace_does_not_reach_the_root_loopback(netlab_cluster: MultiHost) -> None:
    mh, lab = netlab_cluster, netlab_cluster.lab
    etcd_port = urllib.parse.urlsplit(mh.control_plane.etcd_url).port
    assert etcd_port is not None
    # etcd listens on the root namespace's 127.0.0.1 ...
    socket.create_connection(("127.0.0.1", etcd_port), timeout=2).close()
    apiserver = urllib.parse.urlsplit(mh.server)
    assert apiserver.hostname == lab.bridge_address and apiserver.port is not None
    for host in mh.hosts:
        # ... which in a host is its own loopback, where nothing listens,
        assert lab.probe(host, "127.0.0.1", etcd_port) == "refused", host
        # while the apiserver on the bridge address answers.
        assert lab.probe(host, lab.bridge_address, apiserver.port) == "connected", host


def test_a_cut_host_stops_renewing_while_the_others_go_on(
    netlab_cluster: MultiHost, agents: dict[str, subprocess.Popen[bytes]]
) -> None:
    mh, lab = netlab_cluster, netlab_cluster.lab
    _all_renewed_after(mh, _all_leases(mh), "every Lease renewing before the cut")
    cut_at = datetime.now(UTC)
    lab.cut("a")
    try:
        # Nothing leaves a after the cut: its last renewTime (the agent's clock, which is
        # this machine's) predates the cut, and stays, while b and c go on.
        assert lab.probe("a", lab.bridge_address, urllib.parse.urlsplit(mh.server).port or 0) == (
            "timeout"
        )
        time.sleep(4 * RENEW_INTERVAL)
        frozen = _renewals(mh)
        assert frozen["a"] <= cut_at + timedelta(milliseconds=10), (frozen["a"], cut_at)
        time.sleep(4 * RENEW_INTERVAL)
        later = _renewals(mh)
        assert later["a"] == frozen["a"], "a renewed its Lease while cut off"
        for host in ("b", "c"):
            assert later[host] > frozen[host] > cut_at, (host, frozen[host], later[host])
        assert agents["a"].poll() is None, "the cut-off agent exited"
    finally:
        lab.heal("a")
    healed = wait_for(
        lambda: (r := _renewals(mh)) and r["a"] > later["a"] and r,
        timeout=10,
        what="a renewing again after the heal",
    )
    _all_renewed_after(mh, healed, "every Lease renewing after the heal")
