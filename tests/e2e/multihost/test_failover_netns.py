"""Failover on the network-namespace lab: a host's agent really cut off, its processes running.

One `steward controller` in the root namespace (Leases listed every 0.5 s, grace 3 s) and one
`steward agent --serve` INSIDE each host's namespace (renewing every 0.5 s), all against the
lab's apiserver on the bridge. A :class:`tests.support.copies.Copies` sampler counts, every
100 ms and machine-wide, the processes carrying each service's env marker.

* **Network cut, AfterFencing** (fence 2 s, replace 7 s): the service's host is cut off the
  bridge (its agent and fence helper keep running, but reach nothing). Its copy is stopped on
  the host before the copy elsewhere starts; the service is Ready elsewhere with epoch + 2;
  never two copies. Healed, the old agent renews again, logs that its epoch is over, does not
  start it again, and the apiserver refuses (422) a status write presenting the old epoch.
* **Apiserver outage** (SIGSTOP for longer than the grace, the fence and the replace time):
  every agent and the controller lose the apiserver at once. Nothing moves (same host, same
  epoch, no FailedOver Event); the Never and Manual copies run on, the AfterFencing one is
  stopped by its host (its Lease is not renewed) and not started again during the outage.
  Continued, everything converges: every service and StewardNode Ready, one copy each, the
  Never and Manual ones adopted in place.
* **Fenced, then restarted in place, then moved**: a cut longer than the fence but shorter
  than the replace time stops the copy without a failover; healed, the host re-claims the
  same epoch and starts it again. Moved afterwards (host cordoned, the documented unbinding)
  while the host's agent is paused for 2 s, the copy elsewhere still starts only once the old
  one is gone: the release handshake holds after a fence too.
* **Exposed, cut, moved** (``endpoint.expose: Cluster``): the service binds its host's bridge
  address, is reached there from another host's namespace through the address its
  EndpointSlice gives, and ``status.endpoint.uri`` names its Service. Cut off, the old address
  goes not ready before the new one is ready (sampled every 100 ms); deleted, the Service and
  the slice go with it. A Service of the same name that Steward did not create is left as it
  is, gets no slice, and the resource gets a Warning Event.
* **Logs from the host that runs it**: `steward logs NAME -n NS --kubeconfig` (in the root
  namespace) finds the host from the binding and reads the agent's HTTPS endpoint, trusting
  only the certificate its StewardNode publishes, as the user of that kubeconfig: a token
  allowed ``get managedservices/log`` in the namespace reads (tail and follow), one allowed
  everything else but that, or only in another namespace, gets 403, no or a forged token 401.
* **Never on a cut host**: cut for longer than the grace period, the service is NodeLost
  while its copy runs on, nothing moves; healed, the host renews and its agent writes its
  status again: StewardNode and service Ready, the same copy adopted in place.
* **An agent killed (SIGKILL), Never**: NodeLost within the grace, nothing moves past the
  replace time, the copy runs on; the agent started again adopts it in place.
* **An agent stopped (SIGSTOP) or killed (SIGKILL), AfterFencing**: the fence helper (its own
  process) stops the copy after the fence time; the copy elsewhere starts only after it is
  gone; the agent, continued or started again, does not start it again.
* **Placement across the three hosts**: a label, a taint (tolerated or not) and a CPU request
  decide where each service goes, and the refusals say why (kube-scheduler's words).
* **Drain**: `steward drain` of a live host moves its service to another host, one copy at
  a time, and returns once the old copy is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import psutil
import pytest
from hack.testenv import controlplane

from tests.support.copies import Copies
from tests.support.hosts import (
    ServingHosts,
    condition,
    continue_stopped,
    forget_hosts,
    node_of,
    pid_of,
)
from tests.support.kubectl import log_reader
from tests.support.manifests import http_daemon_spec
from tests.support.multihost import MultiHost
from tests.support.namespaces import fresh_namespace
from tests.support.netns import NetLab
from tests.support.operator import read_log, start_steward
from tests.support.paths import REPO
from tests.support.processes import alive
from tests.support.waits import wait_for

LEASE_NAMESPACE = "kube-node-lease"
MARK = "E2E_NETNS_FAILOVER"
RENEW, GRACE = 0.5, 3.0
FAST = ["--renew-interval", str(RENEW), "--lease-duration", "3", "--status-interval", "0.5"]
MONITOR = ["--node-monitor-period", "0.5", "--node-monitor-grace-period", str(GRACE)]
FENCE_AFTER, REPLACE_AFTER = 2, 7  # the CRD's CEL: replace >= fence + 5
AFTER_FENCING: dict[str, Any] = {
    "policy": "AfterFencing",
    "fenceAfterSeconds": FENCE_AFTER,
    "replaceAfterSeconds": REPLACE_AFTER,
}
OUTAGE = REPLACE_AFTER + 2.0
"""The apiserver outage: longer than the grace, the fence and the replace time."""
SLACK = 1.5
"""What a deadline may be late by: a renewal interval, the pollers' periods, a SIGKILL."""
STALE_EPOCH = "this write is for a binding that is over (a stale epoch)"
LOG_PORT = 10260
"""Each agent's log endpoint, on its host's address (one port: one namespace per host)."""
TIMEOUT = (3, 10)
"""Every request of the test's own client: connect, read (the apiserver may be stopped)."""


@dataclass(kw_only=True)
class Failover(ServingHosts):
    """The controller, one serving agent per host, the API clients and the sampler."""

    mh: MultiHost
    nodes: dict[str, str]
    """host -> its StewardNode's name."""
    states: dict[str, Path]
    leases: Any
    copies: Copies
    argvs: dict[str, list[str]]
    """host -> the argv its agent was started with (inside its namespace)."""
    request_timeout: tuple[float, float] | None = TIMEOUT

    @property
    def lab(self) -> NetLab:
        return self.mh.lab

    def host_of(self, node: str | None) -> str:
        return next(h for h, n in self.nodes.items() if n == node)

    def start_agent(self, host: str) -> subprocess.Popen[bytes]:
        """(Re)start ``host``'s agent in its namespace, as the fixture first started it."""
        with open(self.logs[host], "ab") as out:
            self.agents[host] = subprocess.Popen(
                self.argvs[host],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        return self.agents[host]

    def apply(
        self,
        name: str,
        failover: dict[str, Any],
        spec: dict[str, Any] | None = None,
        placement: dict[str, Any] | None = None,
    ) -> None:
        self.create(name, {"failover": failover, **(placement or {})}, spec)

    def node_condition(self, host: str) -> dict[str, Any]:
        """The Ready condition of the host's StewardNode ({} while it is not registered)."""
        try:
            obj = self.stewardnode(self.nodes[host])
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return condition(obj, "Ready")

    def node_ready(self, host: str) -> bool:
        return self.node_condition(host).get("status") == "True"

    def renewed(self, host: str) -> datetime:
        """The renewTime of the host's Lease."""
        lease = self.leases.read_namespaced_lease(
            f"steward-{self.nodes[host]}", LEASE_NAMESPACE, _request_timeout=TIMEOUT
        )
        return lease.spec.renew_time  # type: ignore[no-any-return]

    def fence_targets(self, host: str) -> dict[str, Any]:
        """The fence helper's list on ``host`` (``<state-dir>/agent/fence.json``)."""
        try:
            data = json.loads((self.states[host] / "agent" / "fence.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def wait_fence_target(self, host: str, name: str, pid: int) -> None:
        """Until ``host``'s fence helper knows the copy (it fences the agent's last list)."""
        key = f"{self.namespace}/{name}"
        wait_for(
            lambda: (self.fence_targets(host).get(key) or {}).get("pid") == pid,
            timeout=10,
            step=0.1,
            what=f"{key} (pid {pid}) in the fence list of {host}",
        )

    def debug(self) -> str:
        return "\n".join(f"--- {k}\n{_tail(v, 30)}" for k, v in self.logs.items())

    def tables(self) -> list[str]:
        """What an admin sees (docs/multi-host.md shows this run's output)."""
        out = []
        for args in (("get", "stewardnodes"), ("get", "msvc", "-n", self.namespace)):
            shown = self.mh.kubectl(*args, check=False)
            out += [f"$ kubectl {' '.join(args)}", *shown.stdout.rstrip().splitlines()]
        return out


def epoch_of(obj: dict[str, Any]) -> int:
    return int(obj["status"]["placement"]["epoch"])


def apiserver_pid(info: controlplane.ControlPlaneInfo) -> int:
    """The PID of this control plane's kube-apiserver (found by its ``--cert-dir``, which is
    in the control plane's own work directory: no other apiserver has it)."""
    flag = f"--cert-dir={info.work_dir / 'apiserver-certs'}"
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "kube-apiserver" and flag in (proc.info["cmdline"] or ()):
            found.append(proc.pid)
    assert len(found) == 1, f"kube-apiserver of {info.work_dir}: {found}"
    return found[0]


def log_since(path: Path, offset: int) -> str:
    """What was appended to a log after ``offset`` bytes."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _stop_all(procs: list[subprocess.Popen[bytes]], grace: float = 20) -> None:
    """SIGTERM to each process (by its PID) at once, then SIGKILL what outlives ``grace``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


def _kill_left(lab: NetLab, hosts: tuple[str, ...]) -> dict[str, list[str]]:
    """Wait a little for what the agents leave (fence helpers, log hubs) to end, then kill
    whatever is still inside the hosts' namespaces, by PID; returns what was killed."""
    deadline = time.monotonic() + 10
    while any(lab.pids(h) for h in hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed: dict[str, list[str]] = {}
    for host in hosts:
        for pid in lab.pids(host):
            try:
                proc = psutil.Process(pid)
                killed.setdefault(host, []).append(f"{pid}: {' '.join(proc.cmdline())[:160]}")
                proc.kill()
                proc.wait(timeout=10)
            except psutil.Error:
                continue
    return killed


def _tail(log: Path, lines: int = 60) -> str:
    """The end of a log, without urllib3's retry warnings (a cut host has many)."""
    kept = [line for line in read_log(log).splitlines() if "urllib3.connectionpool" not in line]
    return "\n".join(kept[-lines:])


def _wall(at: float) -> str:
    """A ``time.monotonic()`` instant as the logs' wall clock (HH:MM:SS,mmm)."""
    wall = time.time() - (time.monotonic() - at)
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f",{int(wall % 1 * 1000):03d}"


def _lines(log: Path, offset: int, *words: str) -> list[str]:
    """The lines appended to ``log`` after ``offset`` that contain one of ``words``."""
    text = log_since(log, offset) if log.exists() else ""
    return [f"    {line}" for line in text.splitlines() if any(w in line for w in words)]


def _poll(pred: Callable[[], bool], timeout: float, step: float = 0.2) -> float | None:
    """``time.monotonic()`` when ``pred()`` first held, polled for ``timeout`` s (None: never)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


STARTED = "Activity 'startup' succeeded"
"""kopf's line once Steward's startup handler ran: the operator (or agent) is serving."""


@pytest.fixture(scope="module")
def failover(
    netlab_cluster: MultiHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Failover]:
    mh, lab = netlab_cluster, netlab_cluster.lab
    kubectl, info = mh.kubectl, mh.control_plane
    run = "r" + uuid.uuid4().hex[:6]
    nodes = {h: f"nf-{h}-{run}" for h in mh.hosts}
    tmp = tmp_path_factory.mktemp("netns-failover")
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(mh.kubeconfig)
    )
    custom = kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)
    leases = kubernetes.client.CoordinationV1Api(api)
    env = info.env()
    copies = Copies(MARK)
    outlived: dict[str, list[int]] = {}
    with fresh_namespace(kubectl, f"netns-failover-{run}") as ns:
        logs = {"controller": tmp / "controller.log"}
        controller = start_steward(["controller", "-n", ns, *MONITOR], env, logs["controller"])
        agents: dict[str, subprocess.Popen[bytes]] = {}
        states: dict[str, Path] = {}
        argvs: dict[str, list[str]] = {}
        try:
            fo = Failover(
                namespace=ns, run=run, mark=MARK, agents=agents, controller=controller,
                logs=logs, env=env, custom=custom, core=core, mh=mh, nodes=nodes,
                states=states, leases=leases, copies=copies, argvs=argvs,
            )  # fmt: skip
            for host, node in nodes.items():
                states[host] = tmp / host / "state"
                states[host].mkdir(parents=True)
                logs[host] = tmp / host / "agent.log"
                argv = [sys.executable, "-m", "steward.cli", "--state-dir", str(states[host])]
                argv += ["agent", "--node", node, "--serve", "-n", ns, "--label", f"e2e-run={run}"]
                argv += ["--kubeconfig", str(mh.kubeconfig), "--address", lab.address(host)]
                argv += ["--log-port", str(LOG_PORT)]
                argvs[host] = lab.argv(host, [*argv, *FAST])
                fo.start_agent(host)
            wait_for(
                lambda: all(fo.node_ready(h) for h in mh.hosts),
                timeout=60,
                what="three StewardNodes Ready",
            )
            wait_for(
                lambda: all(STARTED in read_log(log) for log in logs.values()),
                timeout=60,
                what="the controller and the three agents serving",
            )
            copies.start()
            yield fo
        finally:
            try:
                for host in mh.hosts:
                    if lab.is_cut(host):
                        lab.heal(host)
                continue_stopped(agents.values())
                kubectl("delete", "msvc", "--all", "-n", ns, "--wait=true", "--timeout=60s",
                        timeout=90, check=False)  # fmt: skip
                copies.stop()
                for name in copies.names():
                    if left := [p for p in copies.pids(name) if alive(p)]:
                        outlived[name] = left
            finally:
                _stop_all([*agents.values(), controller])
                killed = _kill_left(lab, mh.hosts)
                forget_hosts(kubectl, nodes.values(), LEASE_NAMESPACE)
                for name, log in logs.items():
                    print(f"--- {name}\n{_tail(log)}")
                if killed:
                    print(f"killed in the hosts' namespaces after the agents stopped: {killed}")
    assert not outlived, f"copies outlived their ManagedServices: {outlived}"


@pytest.fixture
def fo(failover: Failover) -> Iterator[Failover]:
    """The module's lab, every host Ready; this test's ManagedServices are deleted after it,
    copies and all."""
    wait_for(
        lambda: all(failover.node_ready(h) for h in failover.mh.hosts),
        timeout=30,
        what="three StewardNodes Ready before the test",
    )
    yield failover
    for host in failover.mh.hosts:
        if failover.lab.is_cut(host):
            failover.lab.heal(host)
    failover.mh.kubectl("delete", "msvc", "--all", "-n", failover.namespace, "--wait=true",
                        "--timeout=60s", timeout=90)  # fmt: skip
    copies = failover.copies
    wait_for(
        lambda: not any(alive(p) for n in copies.names() for p in copies.pids(n)),
        timeout=15,
        what="every copy gone with its ManagedService",
    )


def test_network_cut_fences_before_the_copy_elsewhere_starts(fo: Failover) -> None:
    name = "cut"
    fo.apply(name, AFTER_FENCING)
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    old_node, old_pid, epoch = node_of(obj), pid_of(obj), epoch_of(obj)
    host = fo.host_of(old_node)
    agent = fo.agents[host]
    fo.wait_fence_target(host, name, old_pid)
    log_at = log_size(fo.logs[host])
    fence_log = fo.states[host] / "agent" / "fence.log"
    fence_log_at = log_size(fence_log)
    report = [f"network cut of {host} ({old_node}), {name} pid {old_pid} epoch {epoch}:"]
    report += fo.tables()

    cut_wall = datetime.now(UTC)
    fo.lab.cut(host)
    cut_at = time.monotonic()
    try:
        try:
            wait_for(lambda: not alive(old_pid), timeout=FENCE_AFTER + RENEW + SLACK, step=0.05,
                     what=f"the copy on the cut host {host} stopped")  # fmt: skip
            report.append(
                f"  seen dead by the test {time.monotonic() - cut_at:.2f} s after the cut"
            )
            assert agent.poll() is None, "the cut-off agent exited"
            lost = wait_for(
                lambda: (
                    (o := fo.get(name)) and condition(o, "Ready").get("reason") == "NodeLost" and o
                ),
                timeout=GRACE + 5,
                what="the service NodeLost",
            )
            assert condition(lost, "Ready")["status"] == "Unknown", lost["status"]
            assert fo.node_condition(host).get("reason") == "NodeStatusUnknown"
            report += fo.tables()
            moved = wait_for(
                lambda: (o := fo.ready(name)) and node_of(o) not in (None, old_node) and o,
                timeout=REPLACE_AFTER + 10,
                what="the service Ready on another host",
            )
            ready_after = time.monotonic() - cut_at
            new_pid = pid_of(moved)
            report.append(f"  Ready on {node_of(moved)} (pid {new_pid}) {ready_after:.2f} s after")
            report += fo.tables()
            assert epoch_of(moved) == epoch + 2, moved["status"]["placement"]
            assert fo.events(name, "FailedOver"), "no FailedOver Event"
            # Nothing of the cut host arrived: its last renewal was sent before the cut.
            frozen = fo.renewed(host)
            assert frozen <= cut_wall + timedelta(milliseconds=10), (frozen, cut_wall)
            assert agent.poll() is None, "the cut-off agent exited"
        finally:
            fo.lab.heal(host)
        report.append(f"  healed {time.monotonic() - cut_at:.2f} s after the cut")

        # The order, from the sampler: the old copy gone before the new one first seen.
        gone = fo.copies.gone_at(name, old_pid)
        started = fo.copies.first_seen(name, new_pid)
        assert gone is not None and started is not None, (gone, started, fo.copies.pids(name))
        report.append(
            f"  old copy gone {gone - cut_at:.2f} s after the cut, new copy started "
            f"{started - cut_at:.2f} s after: gap {started - gone:.2f} s"
        )
        assert gone <= started, f"the new copy started {gone - started:.2f} s before the old ended"
        assert fo.copies.max_copies(name) == 1, fo.debug()
        report.append(f"  on {host}, wall clock of the old copy's end: {_wall(gone)}")
        report += _lines(fo.logs[host], log_at, "stopping it here", "is over")
        report += _lines(fence_log, fence_log_at, "fenced")

        # Healed: the old agent renews again, knows its epoch is over, starts nothing.
        wait_for(lambda: fo.renewed(host) > frozen, timeout=10, what=f"{host} renewing")
        wait_for(lambda: fo.node_ready(host), timeout=10, what=f"StewardNode of {host} Ready")
        over = f"{fo.namespace}/{name}: epoch {epoch} is over on {old_node}"
        wait_for(
            lambda: over in log_since(fo.logs[host], log_at),
            timeout=20,
            what=f"the agent of {host} logging {over!r}",
        )
        report.append(
            f"  the old agent logged {over!r} {time.monotonic() - cut_at:.2f} s after the cut"
        )
        released = f"stopped on {old_node}: its binding there (epoch {epoch}) is over"
        wait_for(
            lambda: any(released in e.message for e in fo.events(name, "Released")),
            timeout=10,
            what=f"the Released Event of {old_node}, posted once it reaches the apiserver again",
        )
        time.sleep(3.0)  # the old agent's daemon retries every 2 s: none may start it again
        assert fo.copies.sample().get(name, set()) == {new_pid}, fo.debug()
        assert fo.copies.max_copies(name) == 1, fo.debug()
        still = fo.ready(name)
        assert still is not None and node_of(still) == node_of(moved), still
        assert pid_of(still) == new_pid and epoch_of(still) == epoch + 2, still["status"]

        # A status write as the old host makes them, presenting its old epoch: refused.
        stale = {"state": "inactive", "placement": {"reportedEpoch": epoch}}
        with pytest.raises(kubernetes.client.ApiException) as refused:
            fo.patch_status(name, stale)
        assert refused.value.status == 422, refused.value
        assert STALE_EPOCH in str(refused.value.body), refused.value.body
        assert fo.get(name)["status"]["state"] != "inactive"
        report.append(f"  a write presenting epoch {epoch}: {refused.value.status}")
    finally:
        print("\n" + "\n".join(report))


def test_apiserver_outage_moves_nothing_and_converges(fo: Failover) -> None:
    names: dict[str, dict[str, Any]] = {
        "waits": {"policy": "Never"},
        "fenced": AFTER_FENCING,
        "manual": {"policy": "Manual"},
    }
    for name, policy in names.items():
        fo.apply(name, policy)
    before = wait_for(
        lambda: (got := {n: fo.ready(n) for n in names}) and all(got.values()) and got,
        timeout=30,
        what="three services Ready",
    )
    where = {n: node_of(o) for n, o in before.items()}
    assert sorted(map(str, where.values())) == sorted(fo.nodes.values()), where  # Spread
    epochs = {n: epoch_of(o) for n, o in before.items()}
    pids = {n: pid_of(o) for n, o in before.items()}
    fenced_host = fo.host_of(where["fenced"])
    fo.wait_fence_target(fenced_host, "fenced", pids["fenced"])
    controller_at = log_size(fo.logs["controller"])
    agent_at = log_size(fo.logs[fenced_host])
    fence_log = fo.states[fenced_host] / "agent" / "fence.log"
    fence_log_at = log_size(fence_log)
    report = [f"apiserver outage; before: {where}, pids {pids}, epochs {epochs}"]

    apiserver = apiserver_pid(fo.mh.control_plane)
    os.kill(apiserver, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        try:
            while time.monotonic() < stopped_at + OUTAGE:
                time.sleep(0.1)
            during = fo.copies.sample()
        finally:
            os.kill(apiserver, signal.SIGCONT)
        resumed_at = time.monotonic()
        report.append(f"  SIGSTOP for {resumed_at - stopped_at:.2f} s; at its end: {during}")

        # During the outage: the Never and Manual copies ran on; the AfterFencing one was
        # stopped by its host, whose Lease could not be renewed, and not started again.
        fenced_gone = fo.copies.gone_at("fenced", pids["fenced"])
        report.append(
            "  fenced: copy gone "
            + (
                f"{fenced_gone - stopped_at:.2f} s (at {_wall(fenced_gone)})"
                if fenced_gone
                else "never"
            )
            + " into the outage"
        )
        report += _lines(fo.logs[fenced_host], agent_at, "stopping it here", "is over")
        report += _lines(fence_log, fence_log_at, "fenced")
        for name in ("waits", "manual"):
            assert during.get(name) == {pids[name]}, (name, during)
        assert fenced_gone is not None and not during.get("fenced"), (during, fenced_gone)
        assert fenced_gone - stopped_at <= FENCE_AFTER + RENEW + SLACK, fenced_gone - stopped_at
        restarted = fo.copies.max_copies("fenced", since=fenced_gone, until=resumed_at)
        assert restarted == 0, "the fenced service was started again during the outage"

        # Back: nothing moved, and everything converges where it was.
        seen: dict[str, str] = {}

        def converged() -> bool:
            for n in names:
                ready = condition(fo.get(n), "Ready")
                seen[n] = f"{ready.get('status')} ({ready.get('reason')})"
            for h in fo.mh.hosts:
                seen[h] = str(fo.node_condition(h).get("status"))
            return all(v.startswith("True") for v in seen.values())

        # The first looks after SIGCONT may predate the controller's verdicts on what it
        # missed: converged means Ready, hosts and services alike, after a grace period.
        time.sleep(GRACE)
        converged_after = _poll(converged, timeout=12)
        if converged_after is not None:
            converged_after -= resumed_at
            time.sleep(GRACE)  # the controller's next rounds: the hosts renew, nothing moves
        after = {n: fo.get(n) for n in names}
        report.append(
            "  converged "
            + (f"{converged_after:.2f} s after SIGCONT" if converged_after else "never")
            + f" (last look: {seen})"
        )
        for n, obj in after.items():
            ready = condition(obj, "Ready")
            pid = (obj["status"].get("runtime") or {}).get("pid")
            first = fo.copies.first_seen(n, pid) if isinstance(pid, int) else None
            report.append(
                f"  {n}: Ready={ready.get('status')} ({ready.get('reason')}) pid {pid}"
                + (f" (first seen {first - resumed_at:+.2f} s after SIGCONT)" if first else "")
                + f", placement {obj['status']['placement']}"
            )
        report.append(
            "  NodeLost Events: "
            + str({n: [e.message for e in fo.events(n, "NodeLost")] for n in names})
        )
        report.append(
            "  controller:\n"
            + "\n".join(
                f"    {line}"
                for line in log_since(fo.logs["controller"], controller_at).splitlines()
                if "steward.controller.hosts" in line
            )
        )
        for name, obj in after.items():
            assert node_of(obj) == where[name], (name, where[name], obj["status"]["placement"])
            assert epoch_of(obj) == epochs[name], (name, epochs[name], obj["status"]["placement"])
            assert not fo.events(name, "FailedOver"), f"{name} failed over"
            assert fo.copies.max_copies(name) == 1, (name, fo.debug())
        for name in ("waits", "manual"):
            assert pid_of(after[name]) == pids[name], f"{name} was not adopted in place"
        assert converged_after is not None, f"not converged 12 s after a grace period: {seen}"
    finally:
        print("\n" + "\n".join(report))


REJOIN: dict[str, Any] = {
    "policy": "AfterFencing",
    "fenceAfterSeconds": 4,
    "replaceAfterSeconds": 9,
}
"""A longer fence: the host's agent may pause for PAUSE s without being fenced."""
SHORT_CUT = 6.0
"""A cut longer than REJOIN's fence (plus a renewal), shorter than its replace time."""
PAUSE = 2.0


def test_a_copy_fenced_and_restarted_in_place_moves_only_once_released(fo: Failover) -> None:
    name = "rejoin"
    fo.apply(name, REJOIN)
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    node, first_pid, epoch = str(node_of(obj)), pid_of(obj), epoch_of(obj)
    host = fo.host_of(node)
    fo.wait_fence_target(host, name, first_pid)
    report = [f"{name} on {host} ({node}), pid {first_pid}, epoch {epoch}:"]
    try:
        # A cut longer than the fence, shorter than the replace time: fenced, not moved.
        fo.lab.cut(host)
        cut_at = time.monotonic()
        try:
            wait_for(lambda: not alive(first_pid), timeout=4 + RENEW + SLACK, step=0.05,
                     what=f"the copy on the cut host {host} fenced")  # fmt: skip
            report.append(f"  cut: fenced {time.monotonic() - cut_at:.2f} s after the cut")
            time.sleep(max(0.0, cut_at + SHORT_CUT - time.monotonic()))
        finally:
            fo.lab.heal(host)
        back = wait_for(
            lambda: (o := fo.ready(name)) and pid_of(o) != first_pid and o,
            timeout=15,
            what=f"{name} started again on {host} once it renewed and re-claimed its epoch",
        )
        placed = back["status"]["placement"]
        report.append(f"  healed: restarted in place as pid {pid_of(back)}, placement {placed}")
        assert node_of(back) == node and epoch_of(back) == epoch, placed
        assert not fo.events(name, "FailedOver")
        assert fo.copies.max_copies(name) == 1

        # Now move it (its host cordoned, then the unbinding docs/multi-host.md shows), with
        # the host's agent paused a moment, as a busy host's may be: the copy elsewhere
        # must wait until this host has stopped its own and released the epoch.
        old_pid = pid_of(back)
        fo.patch_node(node, {"spec": {"unschedulable": True}})
        # Until the controller's StewardNode watch has the cordon (a tie of empty hosts goes
        # to the first name: maybe this one).
        time.sleep(1.0)
        unbind = {"placement": {"nodeName": None, "epoch": epoch + 1, "reportedEpoch": None}}
        agent = fo.agents[host]
        os.kill(agent.pid, signal.SIGSTOP)
        moved_at = time.monotonic()
        try:
            fo.patch_status(name, unbind)
            time.sleep(PAUSE)
            paused = fo.get(name)["status"]["placement"]
            report.append(
                f"  {PAUSE:.0f} s after the unbinding, {host}'s agent paused: {paused}, copies "
                f"{fo.copies.sample().get(name)}"
            )
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        moved = wait_for(
            lambda: (o := fo.ready(name)) and node_of(o) not in (None, node) and o,
            timeout=20,
            what=f"{name} Ready on another host",
        )
        new_pid = pid_of(moved)
        wait_for(lambda: not alive(old_pid), timeout=10, what=f"the copy on {host} stopped")
        time.sleep(0.3)  # a sample or two without it
        gone = fo.copies.gone_at(name, old_pid)
        started = fo.copies.first_seen(name, new_pid)
        assert gone is not None and started is not None, (gone, started)
        report.append(
            f"  moved to {node_of(moved)}: old copy gone {gone - moved_at:.2f} s after the "
            f"unbinding, new copy started {started - moved_at:.2f} s after; placement "
            f"{moved['status']['placement']}"
        )
        assert fo.copies.max_copies(name) == 1, f"two copies at once: {paused}"
        assert gone <= started, f"the new copy started {gone - started:.2f} s before the old ended"
        assert epoch_of(moved) == epoch + 2, moved["status"]["placement"]
    finally:
        fo.patch_node(node, {"spec": {"unschedulable": False}})
        print("\n" + "\n".join(report))


NEVER_CUT = 5.0
"""Longer than the grace period: the host is judged lost while its copy runs on."""


def test_never_on_a_cut_host_runs_on_and_is_ready_again_after_the_heal(fo: Failover) -> None:
    name = "stays"
    fo.apply(name, {"policy": "Never"})
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    node, pid, epoch = str(node_of(obj)), pid_of(obj), epoch_of(obj)
    host = fo.host_of(node)
    report = [f"Never service {name} on a cut host {host} ({node}), pid {pid}, epoch {epoch}:"]
    try:
        fo.lab.cut(host)
        cut_at = time.monotonic()
        try:
            lost = wait_for(
                lambda: (
                    (o := fo.get(name)) and condition(o, "Ready").get("reason") == "NodeLost" and o
                ),
                timeout=GRACE + 5,
                what=f"{name} NodeLost",
            )
            report.append(f"  NodeLost {time.monotonic() - cut_at:.2f} s after the cut")
            assert condition(lost, "Ready")["status"] == "Unknown", lost["status"]
            time.sleep(max(0.0, cut_at + NEVER_CUT - time.monotonic()))
            assert alive(pid), "a Never service's copy stopped on its cut-off host"
            still = fo.get(name)
            assert node_of(still) == node and epoch_of(still) == epoch, still["status"]
        finally:
            fo.lab.heal(host)
        healed_at = time.monotonic()

        # The host renews again: its agent adopts the copy in place and writes its status
        # again in full (docs/multi-host.md, Never), the StewardNode's and the service's.
        back: dict[str, float] = {}

        def again() -> bool:
            if "node" not in back and fo.node_ready(host):
                back["node"] = time.monotonic() - healed_at
            if "service" not in back and fo.ready(name) is not None:
                back["service"] = time.monotonic() - healed_at
            return len(back) == 2

        _poll(again, timeout=10)
        final = fo.get(name)
        report.append(
            f"  after the heal: Ready again {back} (s after the heal); StewardNode Ready "
            f"{fo.node_condition(host)}; service Ready {condition(final, 'Ready')}"
        )
        assert "node" in back, f"StewardNode {node} not Ready 10 s after the heal"
        assert "service" in back, f"{name} not Ready 10 s after the heal: {final['status']}"
        assert pid_of(final) == pid, "the copy was not adopted in place"
        assert node_of(final) == node and epoch_of(final) == epoch, final["status"]["placement"]
        assert fo.events(name, "NodeLost") and not fo.events(name, "FailedOver")
        assert fo.copies.max_copies(name) == 1, fo.debug()
    finally:
        print("\n" + "\n".join(report))


EXPOSED_PORT = 8080


def _exposed_spec() -> dict[str, Any]:
    spec = http_daemon_spec()
    spec["daemon"]["command"][spec["daemon"]["command"].index("127.0.0.1")] = "$(HOST_IP)"
    spec["endpoint"].update({"port": EXPOSED_PORT, "expose": "Cluster"})
    return spec


def _slice(fo: Failover, name: str) -> dict[str, Any] | None:
    discovery = kubernetes.client.DiscoveryV1Api(fo.core.api_client)
    try:
        got = discovery.read_namespaced_endpoint_slice(
            f"{name}-steward", fo.namespace, _request_timeout=TIMEOUT
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return fo.core.api_client.sanitize_for_serialization(got)  # type: ignore[no-any-return]


def _ready_addresses(sl: dict[str, Any] | None) -> set[str]:
    return {
        a
        for ep in (sl or {}).get("endpoints") or ()
        if (ep.get("conditions") or {}).get("ready")
        for a in ep.get("addresses") or ()
    }


def _service(fo: Failover, name: str) -> Any:
    try:
        return fo.core.read_namespaced_service(name, fo.namespace, _request_timeout=TIMEOUT)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_an_exposed_endpoint_is_reached_through_its_slice_and_moves_first_out(
    fo: Failover,
) -> None:
    name = "exposed"
    fo.apply(name, AFTER_FENCING, _exposed_spec())
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    host = fo.host_of(node_of(obj))
    address, port = fo.lab.address(host), obj["status"]["endpoint"]["port"]
    ep = obj["status"]["endpoint"]
    assert ep["uri"] == f"http://{name}.{fo.namespace}.svc:{EXPOSED_PORT}", ep
    assert ep["hostUri"] == f"http://{address}:{port}" and ep["host"] == address, ep
    svc = _service(fo, name)
    assert svc is not None and svc.spec.selector is None and svc.spec.type == "ClusterIP"
    assert [(p.name, p.port, p.app_protocol) for p in svc.spec.ports] == [
        ("endpoint", EXPOSED_PORT, "http")
    ]
    assert svc.spec.cluster_ip and svc.spec.cluster_ip != "None"
    sl = wait_for(
        lambda: (got := _slice(fo, name)) and _ready_addresses(got) == {address} and got,
        timeout=10,
        what=f"the slice of {name} ready at {address}",
    )
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == name
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "controller.steward.dev"
    )
    assert [p["port"] for p in sl["ports"]] == [port]
    client = next(h for h in fo.mh.hosts if h != host)
    assert fo.lab.probe(client, address, port) == "connected"
    # Bound to the host's address, not to every address: the loopback of its host is closed.
    assert fo.lab.probe(host, "127.0.0.1", port) == "refused"

    # Cut off: sample the slice every 100 ms until another host's address is ready.
    fo.wait_fence_target(host, name, pid_of(obj))
    samples: list[tuple[float, set[str]]] = []
    fo.lab.cut(host)
    cut_at = time.monotonic()
    try:
        deadline = cut_at + REPLACE_AFTER + 15
        while time.monotonic() < deadline:
            ready = _ready_addresses(_slice(fo, name))
            samples.append((time.monotonic() - cut_at, ready))
            if ready - {address}:
                break
            time.sleep(0.1)
    finally:
        fo.lab.heal(host)
    old_out = next((t for t, r in samples if address not in r), None)
    new_in = next((t for t, r in samples if r - {address}), None)
    print(f"exposed: old address {address} not ready {old_out} s after the cut, "
          f"the new one ready {new_in} s after ({len(samples)} samples)")  # fmt: skip
    assert old_out is not None and new_in is not None, samples[-5:]
    assert old_out < new_in, samples
    assert all(len(r) <= 1 for _, r in samples), samples
    moved = wait_for(lambda: fo.ready(name), timeout=10, what=f"{name} Ready elsewhere")
    new_host = fo.host_of(node_of(moved))
    new_address, new_port = fo.lab.address(new_host), moved["status"]["endpoint"]["port"]
    assert new_host != host and _ready_addresses(_slice(fo, name)) == {new_address}
    assert moved["status"]["endpoint"]["uri"] == ep["uri"]
    assert moved["status"]["endpoint"]["hostUri"] == f"http://{new_address}:{new_port}"
    assert fo.lab.probe(host, new_address, new_port) == "connected"

    # Deleted: the Service and the slice go with it.
    fo.mh.kubectl("delete", "msvc", name, "-n", fo.namespace, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: _service(fo, name) is None and _slice(fo, name) is None,
        timeout=15,
        what=f"the Service and the slice of {name} deleted with it",
    )


def test_a_service_steward_did_not_create_is_never_taken_over(fo: Failover) -> None:
    name = "taken"
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"owner": "someone-else"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 9999}]},
    }
    fo.core.create_namespaced_service(fo.namespace, theirs, _request_timeout=TIMEOUT)
    try:
        fo.apply(name, {"policy": "Never"}, _exposed_spec())
        wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready (on its host)")
        warned = wait_for(
            lambda: fo.events(name, "ServiceNameTaken"),
            timeout=10,
            what="the ServiceNameTaken Warning Event",
        )
        assert warned[0].type == "Warning" and "did not create" in warned[0].message
        svc = _service(fo, name)
        assert svc.spec.selector == {"app": "theirs"} and svc.metadata.labels == {
            "owner": "someone-else"
        }
        assert [p.port for p in svc.spec.ports] == [9999]
        assert _slice(fo, name) is None
        fo.mh.kubectl("delete", "msvc", name, "-n", fo.namespace, "--wait=true", "--timeout=60s")
        time.sleep(1.0)  # the controller's DELETED event: it must not delete their Service
        assert _service(fo, name) is not None
    finally:
        fo.core.delete_namespaced_service(name, fo.namespace, _request_timeout=TIMEOUT)


def test_logs_are_read_from_the_host_by_whoever_may_read_them(fo: Failover, tmp_path: Path) -> None:
    import ssl
    import urllib.request

    from tests.support.kubectl import token_kubeconfig

    name, kubectl, ns = "talk", fo.mh.kubectl, fo.namespace
    fo.apply(name, {"policy": "Never"}, http_daemon_spec())  # logs a line per probe (2 s)
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    host = fo.host_of(node_of(obj))
    other = f"{ns}-other"
    kubectl("create", "clusterrole", "e2e-stewardnode-reader", "--verb=get",
            "--resource=stewardnodes.steward.dev")  # fmt: skip
    kubectl("create", "namespace", other)
    try:
        log_reader(kubectl, ns, "reader", True, "e2e-stewardnode-reader")
        log_reader(kubectl, ns, "peeker", False, "e2e-stewardnode-reader")
        log_reader(kubectl, other, "reader", True, "e2e-stewardnode-reader")
        # the other namespace's reader may read the service itself, not its log
        kubectl("create", "rolebinding", "other-reader", "-n", ns, "--role=peeker",
                f"--serviceaccount={other}:reader")  # fmt: skip
        configs = {
            who: token_kubeconfig(kubectl, fo.mh.control_plane, n, a, tmp_path / f"{who}.conf")
            for who, n, a in (("reader", ns, "reader"), ("peeker", ns, "peeker"),
                              ("other", other, "reader"))
        }  # fmt: skip
        env = {k: v for k, v in fo.mh.control_plane.env().items() if k != "KUBECONFIG"}

        def logs(who: str, *extra: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-m", "steward.cli", "--state-dir", str(tmp_path / "none"),
                    "logs", name, "-n", ns, "--kubeconfig", str(configs[who]), *extra]  # fmt: skip
            return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True,
                                  timeout=30, check=False)  # fmt: skip

        wait_for(lambda: "GET / HTTP" in logs("reader", "--tail", "3").stdout, timeout=15,
                 what="a probe's request line in the log, read through the agent")  # fmt: skip
        got = logs("reader", "--tail", "3")
        assert got.returncode == 0 and 1 <= len(got.stdout.splitlines()) <= 3, got
        for who in ("peeker", "other"):
            denied = logs(who, "--tail", "3")
            assert denied.returncode == 1 and "answered 403" in denied.stderr, (who, denied)
            assert "cannot get managedservices/log" in denied.stderr, denied.stderr
        # Follow: the next probe's line arrives while the command runs.
        argv = [sys.executable, "-m", "steward.cli", "--state-dir", str(tmp_path / "none"),
                "logs", name, "-n", ns, "--kubeconfig", str(configs["reader"]), "-f",
                "--tail", "0"]  # fmt: skip
        with open(tmp_path / "follow.out", "wb") as out:
            follower = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: b"GET / HTTP" in (tmp_path / "follow.out").read_bytes(),
                     timeout=15, what="a new line while following")  # fmt: skip
            assert follower.poll() is None, (tmp_path / "follow.out").read_text()
        finally:
            follower.terminate()
            follower.wait(timeout=10)

        # --previous: none before a restart (404, as kubelet's); the killed run's after one.
        never = logs("reader", "--previous")
        assert never.returncode == 1 and "answered 404" in never.stderr, never
        assert "no previous run" in never.stderr, never.stderr
        before = logs("reader").stdout.splitlines()
        os.kill(obj["status"]["runtime"]["pid"], signal.SIGKILL)  # the daemon this test made
        wait_for(lambda: (fo.ready(name) or {}).get("status", {}).get("restarts", 0) >= 1,
                 timeout=30, what=f"{name} restarted and Ready")  # fmt: skip
        kept = logs("reader", "--previous")
        assert kept.returncode == 0, kept
        assert kept.stdout.splitlines()[: len(before)] == before, (before, kept.stdout)
        assert logs("reader").stdout.splitlines()[: len(before)] != before  # a new run's log

        # Without credentials, or with a forged token: 401. The endpoint's certificate is
        # the agent's own (the StewardNode's): a client trusting the usual CAs refuses it.
        node = fo.stewardnode(str(node_of(obj)))
        endpoint = node["status"]["logEndpoint"]
        assert endpoint["port"] == LOG_PORT and "BEGIN CERTIFICATE" in endpoint["certificate"]
        url = f"https://{fo.lab.address(host)}:{LOG_PORT}/logs/{ns}/{name}?tail=1"
        pinned = ssl.create_default_context(cadata=endpoint["certificate"])
        for headers in ({}, {"Authorization": "Bearer forged"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                       context=pinned, timeout=10)  # fmt: skip
            assert refused.value.code == 401, headers
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)
        for binding in (f"{ns}-reader", f"{ns}-peeker", f"{other}-reader"):
            kubectl("delete", "clusterrolebinding", binding, check=False)
        kubectl("delete", "clusterrole", "e2e-stewardnode-reader", check=False)


NEVER = {"policy": "Never"}


def test_a_killed_agent_s_never_service_runs_on_and_is_adopted_when_it_returns(
    fo: Failover,
) -> None:
    name = "orphaned"
    fo.apply(name, NEVER)
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    node, pid, epoch = str(node_of(obj)), pid_of(obj), epoch_of(obj)
    host = fo.host_of(node)
    agent = fo.agents[host]
    os.kill(agent.pid, signal.SIGKILL)  # the agent this fixture started, in its namespace
    agent.wait(timeout=10)
    killed_at = time.monotonic()
    lost = wait_for(
        lambda: (o := fo.get(name)) and condition(o, "Ready").get("reason") == "NodeLost" and o,
        timeout=GRACE + 5,
        what=f"{name} NodeLost",
    )
    lost_after = time.monotonic() - killed_at
    assert condition(lost, "Ready")["status"] == "Unknown", lost["status"]
    time.sleep(max(0.0, killed_at + REPLACE_AFTER + SLACK - time.monotonic()))
    still = fo.get(name)
    assert node_of(still) == node and epoch_of(still) == epoch, still["status"]
    assert alive(pid), "a Never service's copy stopped while its agent was gone"
    assert not fo.events(name, "FailedOver")
    fo.start_agent(host)
    restarted_at = time.monotonic()
    back = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready again")
    assert pid_of(back) == pid and epoch_of(back) == epoch, back["status"]
    assert fo.copies.max_copies(name) == 1, fo.debug()
    print(
        f"\nagent of {host} killed: {name} NodeLost after {lost_after:.2f} s, nothing moved "
        f"for {REPLACE_AFTER + SLACK:.1f} s; restarted, adopted in place (pid {pid}) after "
        f"{time.monotonic() - restarted_at:.2f} s"
    )


@pytest.mark.parametrize("how", ["SIGSTOP", "SIGKILL"])
def test_a_hung_or_dead_agent_s_fence_helper_stops_the_copy_before_it_moves(
    fo: Failover, how: str
) -> None:
    """The fence helper is its own process: it acts whether the agent hangs or dies."""
    name = f"fenced-{how.lower()}"
    fo.apply(name, AFTER_FENCING)
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    node, pid, epoch = str(node_of(obj)), pid_of(obj), epoch_of(obj)
    host = fo.host_of(node)
    fo.wait_fence_target(host, name, pid)
    agent = fo.agents[host]
    os.kill(agent.pid, getattr(signal, how))  # it can neither renew nor stop anything now
    stopped_at = time.monotonic()
    try:
        wait_for(lambda: not alive(pid), timeout=FENCE_AFTER + 5, what="the fence helper")
        fenced_after = time.monotonic() - stopped_at
        moved = wait_for(
            lambda: (o := fo.ready(name)) and node_of(o) not in (None, node) and o,
            timeout=REPLACE_AFTER + GRACE + 20,
            what=f"{name} Ready on another host",
        )
        moved_after = time.monotonic() - stopped_at
        assert epoch_of(moved) == epoch + 2, moved["status"]["placement"]
        assert fo.events(name, "FailedOver"), "no FailedOver Event"
        gone, started = fo.copies.gone_at(name, pid), fo.copies.first_seen(name, pid_of(moved))
        assert gone is not None and started is not None and gone < started, (gone, started)
    finally:
        if how == "SIGSTOP":
            os.kill(agent.pid, signal.SIGCONT)
        else:
            agent.wait(timeout=10)
            fo.start_agent(host)
    time.sleep(3.0)  # the old agent is back: it must not start its copy again
    assert fo.copies.sample().get(name, set()) == {pid_of(moved)}, fo.debug()
    assert fo.copies.max_copies(name) == 1, fo.debug()
    wait_for(lambda: fo.node_ready(host), timeout=15, what=f"{host} Ready again")
    print(
        f"\nagent of {host} {how}: copy fenced after {fenced_after:.2f} s, Ready on "
        f"{node_of(moved)} after {moved_after:.2f} s, gap {started - gone:.2f} s"
    )


def test_placement_follows_labels_taints_and_capacity_across_the_hosts(fo: Failover) -> None:
    a, b, c = fo.mh.hosts
    kubectl, pool = fo.mh.kubectl, f"pool-{fo.run}"
    taint = {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}
    kubectl("label", "stewardnode", fo.nodes[b], f"{pool}=gpu")
    kubectl("label", "stewardnode", fo.nodes[c], f"{pool}=dedicated")
    kubectl("patch", "stewardnode", fo.nodes[c], "--type=merge",
            "-p", json.dumps({"spec": {"taints": [taint]}}))  # fmt: skip
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]

    def placed(name: str) -> dict[str, Any]:
        return wait_for(  # type: ignore[no-any-return]
            lambda: (o := fo.get(name)) and condition(o, "Scheduled").get("status") and o,
            timeout=30,
            what=f"{name} scheduled or refused",
        )

    try:
        fo.apply("gpu", NEVER, placement={"nodeSelector": {pool: "gpu"},
                                          "resources": {"requests": {"cpu": "1500m"}}})  # fmt: skip
        fo.apply("tolerant", NEVER, placement={"nodeSelector": {pool: "dedicated"},
                                               "tolerations": tolerate})  # fmt: skip
        fo.apply("intolerant", NEVER, placement={"nodeSelector": {pool: "dedicated"}})
        for i in range(2):
            fo.apply(f"plain-{i}", NEVER)
        assert node_of(placed("gpu")) == fo.nodes[b]
        assert node_of(placed("tolerant")) == fo.nodes[c]
        refused = condition(placed("intolerant"), "Scheduled")
        assert (refused["status"], refused["reason"]) == ("False", "Unschedulable"), refused
        assert "untolerated taint {dedicated: ml}" in refused["message"], refused
        for i in range(2):  # the taint keeps them off c
            assert node_of(placed(f"plain-{i}")) in (fo.nodes[a], fo.nodes[b])
        # b has 2 CPUs and gpu holds 1.5 of them: one more CPU does not fit there.
        fo.apply("gpu-2", NEVER, placement={"nodeSelector": {pool: "gpu"},
                                            "resources": {"requests": {"cpu": "1"}}})  # fmt: skip
        full = condition(placed("gpu-2"), "Scheduled")
        assert (full["status"], full["reason"]) == ("False", "Unschedulable"), full
        assert "Insufficient cpu" in full["message"], full
        for name in ("gpu", "tolerant", "plain-0", "plain-1"):
            wait_for(lambda n=name: fo.ready(n), timeout=30, what=f"{name} Ready")  # type: ignore[misc]
        print("\n" + "\n".join(fo.tables()))
    finally:
        kubectl("label", "stewardnode", fo.nodes[b], f"{pool}-", check=False)
        kubectl("label", "stewardnode", fo.nodes[c], f"{pool}-", check=False)
        kubectl("patch", "stewardnode", fo.nodes[c], "--type=merge",
                "-p", json.dumps({"spec": {"taints": []}}), check=False)  # fmt: skip


def test_drain_moves_a_live_host_s_service_without_two_copies(fo: Failover) -> None:
    name = "drained"
    fo.apply(name, NEVER)  # drain moves whatever the policy
    obj = wait_for(lambda: fo.ready(name), timeout=30, what=f"{name} Ready")
    node, pid, epoch = str(node_of(obj)), pid_of(obj), epoch_of(obj)
    argv = [sys.executable, "-m", "steward.cli", "drain", node,
            "--kubeconfig", str(fo.mh.kubeconfig), "--timeout", "60"]  # fmt: skip
    try:
        t0 = time.monotonic()
        done = subprocess.run(argv, env=fo.env, cwd=REPO, capture_output=True, text=True,
                              timeout=90, check=False)  # fmt: skip
        took = time.monotonic() - t0
        assert done.returncode == 0, (done, fo.debug())
        assert done.stdout.rstrip().endswith(f"stewardnode/{node} drained"), done.stdout
        assert not alive(pid), "drain returned before the host's agent stopped the copy"
        moved = wait_for(
            lambda: (o := fo.ready(name)) and node_of(o) not in (None, node) and o,
            timeout=30,
            what=f"{name} Ready on another host",
        )
        assert epoch_of(moved) == epoch + 2, moved["status"]["placement"]
        assert fo.copies.max_copies(name) == 1, fo.debug()
        print(f"\ndrain of {node}: {took:.2f} s; Ready on {node_of(moved)}")
    finally:
        fo.mh.kubectl("patch", "stewardnode", node, "--type=merge",
                      "-p", '{"spec":{"unschedulable":false}}', check=False)  # fmt: skip
