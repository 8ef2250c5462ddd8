"""Failover live: `steward controller` judges lost hosts; AfterFencing moves, Never waits.

One controller (Lease listed every 0.5 s, grace 3 s) and two `steward agent --serve` processes
(renewing every 0.5 s) against the real apiserver. A sampler looks at every process on the
machine every 100 ms (a killed agent's children are re-parented) for the service's marker.

* AfterFencing (fence 2 s, replace 8 s): the agent of its host is SIGSTOPped (it can neither
  renew nor stop anything): the fence helper kills the copy, the controller marks the host
  lost and the service NodeLost, then moves it; the new copy starts only after the old one
  is gone, and the agent, continued, does not start it again. Never two copies.
* Never: the agent of its host is SIGKILLed: the service turns Ready=Unknown/NodeLost while
  its process goes on running, nothing is rebound; a new agent adopts the same process.
* Manual: `steward failover` is refused while the host is Ready, and moves it once lost.
* 1,000 updates to a service of one host reach that host's agent and not one reaches the
  other's (the agents watch with a field selector on status.placement.nodeName).
* `steward drain` of a live host: cordoned, refused while a service is pinned there, then
  (--ignore-pinned) the rest moves by the handshake (stopped, released, bound elsewhere)
  while the pinned one keeps running; `steward uncordon` makes it schedulable again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.support.copies import Copies
from tests.support.hosts import (
    GROUP,
    PLURAL,
    VERSION,
    LiveHosts,
    condition,
    node_of,
    serving_hosts,
    wait_nodes_ready,
)
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waits import wait_for

MONITOR = ["--node-monitor-period", "0.5", "--node-monitor-grace-period", "3"]
MARK = "E2E_FAILOVER_SERVICE"
BUSY = tuple(f"busy-{i}" for i in range(4))


@dataclass(kw_only=True)
class Cluster(LiveHosts):
    sampler: Copies

    @property
    def copies(self) -> Copies:
        return self.sampler

    def metrics(self, node: str) -> int:
        """Its agent's --metrics-port."""
        args = self.agent_args[node]
        return int(args[args.index("--metrics-port") + 1])

    def apply(self, name: str, failover: dict[str, Any], pin: str | None = None) -> None:
        self.create(name, {"failover": failover, **({"nodeName": pin} if pin else {})})


@pytest.fixture(scope="module")
def cluster(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with serving_hosts(
        Cluster, control_plane, tmp_path_factory.mktemp("failover"), "failover", "fo", MARK,
        lambda agents: Copies(MARK),
        controller_args=MONITOR,
        agent_args=lambda host: ["--metrics-port", str(free_port()), "--metrics-addr", "127.0.0.1"],
    ) as live:  # fmt: skip
        yield live


def watch_events(cluster: Cluster, node: str) -> float:
    """steward_watch_events_total of NODE's agent (its /metrics)."""
    port = cluster.metrics(node)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(r"^steward_watch_events_total (\S+)$", text, re.M)
    assert found, text[-2000:]
    return float(found.group(1))


def test_updates_to_one_hosts_services_reach_no_other_agent(cluster: Cluster) -> None:
    wait_nodes_ready(cluster.custom, cluster.nodes)
    node, other = cluster.nodes
    for name in BUSY:
        cluster.apply(name, {"policy": "Never"}, pin=node)
    for name in BUSY:
        wait_for(lambda n=name: cluster.ready(n), timeout=60, what=f"{name} Ready")  # type: ignore[misc]
    theirs = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, PLURAL,
        field_selector=f"status.placement.nodeName={other}",
    )["items"]  # fmt: skip
    assert not theirs, "the other host runs something: its own writes would count"
    time.sleep(1.0)  # their own starts' status writes have been delivered
    before = {n: watch_events(cluster, n) for n in cluster.nodes}

    def updates(name: str) -> None:  # writes to one object are serialized by the apiserver
        for i in range(1000 // len(BUSY)):
            cluster.custom.patch_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, PLURAL, name,
                {"metadata": {"annotations": {"e2e.steward.dev/update": str(i)}}},
            )  # fmt: skip

    with ThreadPoolExecutor(len(BUSY)) as pool:  # 1,000 merge patches, one thread a service
        list(pool.map(updates, BUSY))
    # kopf coalesces a burst per object; the host's agent sees the last ones at least.
    wait_for(
        lambda: watch_events(cluster, node) >= before[node] + len(BUSY),
        timeout=30,
        what=f"{node}'s agent to receive the updates",
    )
    time.sleep(2.0)  # anything on its way to the other agent has arrived
    got = {n: watch_events(cluster, n) - before[n] for n in cluster.nodes}
    print(f"watch events during 1,000 updates of {len(BUSY)} services on {node}: {got}")
    assert got[other] == 0, got
    for name in BUSY:
        assert node_of(cluster.get(name)) == node
        cluster.delete(name)
    for name in BUSY:
        wait_for(
            lambda n=name: not cluster.copies.sample().get(n), timeout=30, what=f"{name} stopped"
        )  # type: ignore[misc]


def test_after_fencing_moves_only_once_the_old_copy_is_gone(cluster: Cluster) -> None:
    cluster.apply(
        "fenced",
        {"policy": "AfterFencing", "fenceAfterSeconds": 2, "replaceAfterSeconds": 8},
    )
    obj = wait_for(lambda: cluster.ready("fenced"), timeout=60, what="fenced Ready")
    old_node = node_of(obj)
    old_pid = int(obj["status"]["runtime"]["pid"])
    epoch = obj["status"]["placement"]["epoch"]
    agent = cluster.agents[str(old_node)]
    time.sleep(1.0)  # the fence helper's list is written every 0.25 s
    os.kill(agent.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_for(lambda: not alive(old_pid), timeout=10, what="the fence helper to kill it")
        fenced_after = time.monotonic() - stopped_at
        lost = wait_for(
            lambda: (
                (o := cluster.get("fenced"))
                and condition(o, "Ready").get("reason") == "NodeLost"
                and o
            ),
            timeout=15,
            what="NodeLost",
        )
        assert condition(lost, "Ready")["status"] == "Unknown", lost
        moved = wait_for(
            lambda: (o := cluster.ready("fenced")) and node_of(o) not in (None, old_node) and o,
            timeout=40,
            what="the service Ready on the other host",
        )
        moved_after = time.monotonic() - stopped_at
        assert moved["status"]["placement"]["epoch"] == epoch + 2, moved["status"]["placement"]
        assert cluster.events("fenced", "FailedOver"), "no FailedOver Event"
        new_pid = int(moved["status"]["runtime"]["pid"])
        assert new_pid != old_pid
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    time.sleep(4.0)  # the old agent comes back: it must not start it again
    now = cluster.copies.sample().get("fenced", set())
    assert now == {new_pid}, (now, cluster.debug())
    assert cluster.copies.max_copies("fenced") == 1, cluster.debug()
    print(f"fenced after {fenced_after:.2f} s; Ready elsewhere after {moved_after:.2f} s")
    node = cluster.stewardnode(str(old_node))
    wait_for(
        lambda: condition(cluster.stewardnode(str(old_node)), "Ready").get("status") == "True",
        timeout=15,
        what=f"StewardNode {old_node} Ready again ({node['status']})",
    )


def test_never_waits_for_the_host_and_is_adopted_in_place(cluster: Cluster) -> None:
    cluster.apply("waits", {"policy": "Never"})
    obj = wait_for(lambda: cluster.ready("waits"), timeout=60, what="waits Ready")
    node = str(node_of(obj))
    pid = int(obj["status"]["runtime"]["pid"])
    epoch = obj["status"]["placement"]["epoch"]
    agent = cluster.agents[node]
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    lost = wait_for(
        lambda: (
            (o := cluster.get("waits")) and condition(o, "Ready").get("reason") == "NodeLost" and o
        ),
        timeout=15,
        what="NodeLost",
    )
    assert condition(lost, "Ready")["status"] == "Unknown"
    time.sleep(4.0)  # well past any replacement time: nothing moves
    obj = cluster.get("waits")
    assert node_of(obj) == node and obj["status"]["placement"]["epoch"] == epoch, obj["status"]
    assert alive(pid), "a Never service's process is left running while its host is lost"
    assert cluster.events("waits", "NodeLost"), "no NodeLost Event"
    # The host comes back: the new agent adopts the same process.
    cluster.restart_agent(node)
    back = wait_for(lambda: cluster.ready("waits"), timeout=60, what="waits Ready again")
    assert int(back["status"]["runtime"]["pid"]) == pid, back["status"]
    assert back["status"]["placement"]["epoch"] == epoch
    assert cluster.copies.max_copies("waits") == 1, cluster.debug()


def test_manual_moves_only_when_the_admin_says_so(cluster: Cluster) -> None:
    cluster.apply("manual", {"policy": "Manual"})
    obj = wait_for(lambda: cluster.ready("manual"), timeout=60, what="manual Ready")
    node = str(node_of(obj))
    epoch = obj["status"]["placement"]["epoch"]
    steward = [sys.executable, "-m", "steward.cli", "failover", "manual", "-n", cluster.namespace]
    refused = subprocess.run(steward, env=cluster.env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"host {node} is Ready" in refused.stderr, refused
    agent = cluster.agents[node]
    os.kill(agent.pid, signal.SIGKILL)  # the host is gone, process and all
    agent.wait(timeout=10)
    for pid in cluster.copies.pids("manual"):
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: condition(cluster.get("manual"), "Ready").get("reason") == "NodeLost",
        timeout=15,
        what="NodeLost",
    )
    time.sleep(2.0)
    assert node_of(cluster.get("manual")) == node  # Manual: nothing moves by itself
    done = subprocess.run(steward, env=cluster.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "failed over from" in done.stdout, done
    moved = wait_for(
        lambda: (o := cluster.ready("manual")) and node_of(o) not in (None, node) and o,
        timeout=40,
        what="manual Ready on the other host",
    )
    assert moved["status"]["placement"]["epoch"] == epoch + 2
    assert cluster.copies.max_copies("manual") == 1, cluster.debug()
    cluster.restart_agent(node)


def _steward(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "steward.cli", *args]
    return subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=120)


def test_drain_moves_a_live_hosts_services_but_the_pinned(cluster: Cluster) -> None:
    wait_nodes_ready(cluster.custom, cluster.nodes)
    cluster.apply("drained", {"policy": "Never"})  # drain moves whatever the policy
    obj = wait_for(lambda: cluster.ready("drained"), timeout=60, what="drained Ready")
    node = str(node_of(obj))
    other = next(n for n in cluster.nodes if n != node)
    pid, epoch = int(obj["status"]["runtime"]["pid"]), obj["status"]["placement"]["epoch"]
    cluster.apply("pinned", {"policy": "Never"}, pin=node)
    pinned = wait_for(lambda: cluster.ready("pinned"), timeout=60, what="pinned Ready")
    pinned_pid = int(pinned["status"]["runtime"]["pid"])

    def unschedulable() -> bool:
        host = cluster.stewardnode(node)
        return bool((host.get("spec") or {}).get("unschedulable"))

    refused = _steward(cluster, "drain", node)
    assert refused.returncode == 1, refused
    assert f"{cluster.namespace}/pinned" in refused.stderr and "--ignore-pinned" in refused.stderr
    assert f"stewardnode/{node} cordoned" in refused.stdout, refused
    assert unschedulable()
    assert node_of(cluster.get("drained")) == node  # refused: nothing moved

    started = time.monotonic()
    done = _steward(cluster, "drain", node, "--ignore-pinned", "--timeout", "60")
    print(f"drain took {time.monotonic() - started:.2f} s:\n{done.stdout}{done.stderr}")
    assert done.returncode == 0, (done, cluster.debug())
    key = f"{cluster.namespace}/drained"
    assert "already cordoned" in done.stdout and f"moving managedservice {key}" in done.stdout
    assert f"managedservice {key} left {node}" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith(f"stewardnode/{node} drained"), done.stdout
    assert not alive(pid), "drain returned before the host's agent stopped the copy"
    moved = wait_for(
        lambda: (o := cluster.ready("drained")) and node_of(o) == other and o,
        timeout=40,
        what="drained Ready on the other host",
    )
    placed = moved["status"]["placement"]
    assert (placed["epoch"], placed.get("releasedEpoch")) == (epoch + 2, epoch), placed
    assert cluster.events("drained", "Drained"), "no Drained Event"
    still = cluster.get("pinned")
    assert node_of(still) == node and int(still["status"]["runtime"]["pid"]) == pinned_pid
    assert cluster.copies.max_copies("drained") == 1, cluster.debug()

    back = _steward(cluster, "uncordon", node)
    assert back.returncode == 0 and f"stewardnode/{node} uncordoned" in back.stdout, back
    assert not unschedulable()
    missing = _steward(cluster, "drain", f"no-such-{cluster.run}")
    assert missing.returncode == 1 and "not found" in missing.stderr, missing
