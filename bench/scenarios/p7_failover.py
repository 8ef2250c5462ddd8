"""P7 failover: a lost host's service Ready elsewhere, and what an idle host costs the API.

One ``steward controller`` and three ``steward agent --serve`` processes (three "hosts" on
this machine, each with its own state directory, registering a StewardNode and renewing a
Lease ``kube-node-lease/steward-NAME``) against the run's apiserver:

* host loss — one AfterFencing service (fenceAfterSeconds 2, replaceAfterSeconds 8); the
  agents renew every 0.5 s (Lease 3 s, status every 0.5 s), the controller lists the Leases
  every 0.5 s (grace 3 s). The agent of the service's host is SIGSTOPped: it can neither
  renew nor stop anything, as on a hung host. From the SIGSTOP: (a) the old copy's process
  gone (the fence helper kills it), (b) the watch delivers Ready=True from a new process on
  another host (``status.placement.nodeName`` changed, epoch + 2). Then SIGCONT, its
  StewardNode Ready=True again, and the next run from wherever the service is now. The floor
  of (b) is replaceAfterSeconds plus the raw cost of starting the same daemon by hand until
  its first HTTP 200 (as P1's raw spawn), measured in the same run before every loss. A
  sampler counts every 100 ms, machine-wide, the live processes carrying the service's
  environment marker: there must never be two.
* idle API — the agents with ``steward agent``'s defaults (renew 10 s, Lease 40 s, status
  every 10 s), the controller with its defaults (Leases listed every 5 s, grace 50 s: the
  fast 3 s grace would call a host renewing every 10 s lost), 10 Ready daemons per host.
  ``apiserver_request_total`` has no client label, so the clients are told apart by three
  windows: the apiserver alone (before any of this starts), controller + agents, agents
  only (controller stopped; it is started again for the clean-up, its finalizer needs it).
  The agents' Lease renewals are counted exactly by a watch on kube-node-lease (a PUT that
  succeeds is one MODIFIED event). The goal: renewals and nothing else, 6 per host per minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.harness import plots
from bench.harness.cleanup import log, marked_pids
from bench.harness.cluster import GROUP, PLURAL, REPO, VERSION, Api, msvc
from bench.harness.context import Bench
from bench.harness.fleet import create_many, listener_spec, request_delta
from bench.harness.operator import Samples, metric, parse_metrics
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import (
    free_port,
    poll_http_200,
    process_start_monotonic,
    ratio,
    summarize,
)
from bench.harness.watch import Sighting, Watcher, ready

KEY = "p7"
TITLE = "P7 failover: host loss -> Ready elsewhere; idle API requests per host"
NODE_CRD = REPO / "crds" / "stewardnodes.steward.dev.yaml"
NODES_PATH = f"/apis/{GROUP}/{VERSION}/stewardnodes"
LEASE_NAMESPACE = "kube-node-lease"
LEASES_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
HOST_LETTERS = "abc"
RUN_LABEL = "steward-bench-run"
HOST_LABEL = "steward-bench-host"
MARK = "STEWARD_BENCH_P7_SERVICE"
"""In every P7 daemon's environment: run id / scope / service (the copies sampler's key)."""
FENCE_AFTER, REPLACE_AFTER = 2, 8
"""Whole seconds: the CRD says integer (2.0 passes the schema but fails its CEL rule)."""
FAST_MONITOR = ["--node-monitor-period", "0.5", "--node-monitor-grace-period", "3"]
SERVICES_PER_HOST = 10
FENCE_LIMIT = FENCE_AFTER + 0.5
"""The fence counts from the start of the last renewal (up to 0.5 s before the SIGSTOP) and
polls every 0.2 s: the old copy must be gone within fenceAfterSeconds + 0.5 s."""
REPLACE_RATIO_TARGET = 1.25
"""Ready elsewhere at most 1.25 x (replaceAfterSeconds + raw start): the controller sees a
renewal up to one monitor period late and judges once per period, then one bind, one watch
event to the new host's agent and one start: about 1 s over an 8 s floor."""
READY_TIMEOUT = 120.0
STEWARD_RESOURCES = frozenset(
    {
        "managedservices",
        "stewardnodes",
        "stewardpolicies",
        "leases",
        "events",
        "secrets",
        "configmaps",
        "namespaces",
        "serviceaccounts",
        "customresourcedefinitions",
    }
)
"""What Steward's code (and kopf under it) requests at all; the idle windows charge it only
with these (anything else in a window is the apiserver's own loops)."""
QUIET_SECONDS = 10.0
AUDIT_FLUSH = 1.0
SETTLE_MAX = 120.0


@dataclass(frozen=True)
class Timings:
    """An agent's ``--renew-interval``, ``--lease-duration`` and ``--status-interval``."""

    renew: float
    lease: float
    status: float

    def args(self) -> list[str]:
        return [
            "--renew-interval",
            f"{self.renew:g}",
            "--lease-duration",
            f"{self.lease:g}",
            "--status-interval",
            f"{self.status:g}",
        ]


FAST = Timings(renew=0.5, lease=3.0, status=0.5)
DEFAULTS = Timings(renew=10.0, lease=40.0, status=10.0)
"""``steward agent``'s defaults (operator/steward/cli.py)."""


# -- small helpers ---------------------------------------------------------------------
def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def placement(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict(((obj or {}).get("status") or {}).get("placement") or {})


def alive(pid: int) -> bool:
    """Running (a zombie is not: a SIGSTOPped parent cannot reap its killed child)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(pred: Callable[[], bool], timeout: float, interval: float, what: str) -> float:
    """time.monotonic() when ``pred`` first held; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def marked(prefix: str, names: tuple[str, ...] = ()) -> dict[str, set[int]]:
    """Live processes machine-wide whose MARK starts with ``prefix``: value -> pids.

    ``names`` (process name prefixes) skips reading the environment of anything else: the
    sampler runs every 100 ms on a shared machine.
    """
    found: dict[str, set[int]] = {}
    for proc in psutil.process_iter(["name"]):
        if names and not (proc.info["name"] or "").startswith(names):
            continue
        try:
            value = proc.environ().get(MARK)
            if value and value.startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(value, set()).add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _errors(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln][:10]


def install_node_crd(bench: Bench) -> None:
    """bench.run installs the ManagedService CRD only; the hosts need StewardNodes."""
    bench.kubectl("apply", "--server-side", "-f", str(NODE_CRD))
    deadline = time.monotonic() + 30
    while bench.kubectl("get", "stewardnodes", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the StewardNode CRD is not served")
        time.sleep(0.2)


class Copies:
    """Every 100 ms: the live processes carrying MARK=``value``, machine-wide."""

    def __init__(self, value: str, names: tuple[str, ...], interval: float = 0.1) -> None:
        self.value, self.names, self.interval = value, names, interval
        self.samples: list[tuple[float, frozenset[int]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Copies:
        self._thread = threading.Thread(target=self._run, name="p7-copies", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = marked(self.value, self.names).get(self.value, set())
            self.samples.append((time.monotonic(), frozenset(pids)))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def max(self) -> int:
        return max((len(p) for _, p in self.samples), default=0)

    def pids(self) -> set[int]:
        return {pid for _, p in self.samples for pid in p}


class RawWatch:
    """A watch of its own on one collection, every event kept with its arrival time.

    The leases one counts renewals (a PUT that succeeds is one MODIFIED event); the
    ManagedServices one shows when the controller's unbinding and the new binding arrive
    (the harness's Watcher keeps no placement).
    """

    def __init__(self, api: Api, path: str, resource: str) -> None:
        self.api, self.path, self.resource = api, path, resource
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.ended: float | None = None
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> RawWatch:
        """Listed and watching when this returns (the watch opens before any window)."""
        status, out = self.api.request("GET", self.path, resource=self.resource)
        if status != 200:
            raise RuntimeError(f"list {self.resource}: HTTP {status}: {out}")
        rv = out["metadata"]["resourceVersion"]
        self._conn = self.api.connection(timeout=None)
        self._conn.request(
            "GET",
            f"{self.path}?watch=1&resourceVersion={rv}&timeoutSeconds=3600",
            headers={"Accept": "application/json"},
        )
        resp = self._conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch {self.resource}: HTTP {resp.status}")
        self._thread = threading.Thread(target=self._run, args=(resp,), daemon=True)
        self._thread.start()
        return self

    def _run(self, resp: Any) -> None:
        try:
            while not self._stop.is_set():
                line = resp.readline()
                t = time.monotonic()
                if not line:
                    break
                event = json.loads(line)
                self.events.append((t, str(event.get("type")), event.get("object") or {}))
        except (OSError, ValueError):
            pass
        self.ended = time.monotonic()

    def of(self, name: str, since: float) -> list[tuple[float, str, dict[str, Any]]]:
        return [e for e in list(self.events) if e[0] >= since and e[2]["metadata"]["name"] == name]

    def modified(self, names: list[str], since: float, until: float) -> dict[str, int]:
        out = dict.fromkeys(names, 0)
        for t, kind, obj in list(self.events):
            name = obj["metadata"]["name"]
            if kind == "MODIFIED" and name in out and since <= t < until:
                out[name] += 1
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.sock and self._conn.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# -- the hosts ---------------------------------------------------------------------------
class Hosts:
    """One ``steward controller`` and three ``steward agent --serve`` in one namespace.

    ``close()`` (also registered with the reaper) leaves nothing: stopped agents are
    continued, the ManagedServices deleted and their processes awaited, the processes
    stopped by PID, what is left under their scopes killed, StewardNodes and Leases deleted.
    """

    def __init__(
        self,
        bench: Bench,
        suffix: str,
        timings: Timings,
        controller_args: list[str],
        metrics: bool = False,
    ) -> None:
        self.b = bench
        self.suffix = suffix
        self.timings = timings
        self.controller_args = controller_args
        self.run = f"{bench.reaper.short}-{suffix}"
        self.nodes = [f"{suffix}-{c}-{bench.reaper.short}" for c in HOST_LETTERS]
        self.dir = bench.work_dir / suffix
        self.namespace = ""
        self.controller: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {n: free_port() for n in self.nodes} if metrics else {}
        self.logs: dict[str, Path] = {}
        self.scopes: list[str] = []
        self._closed = False

    def mark(self, service: str = "") -> str:
        return f"{self.b.reaper.run_id}/{self.suffix}/{service}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.namespace = self.b.namespace(self.suffix)
        self.b.reaper.on_close(f"{self.suffix} hosts", self.close)
        self.start_controller()
        for node in self.nodes:
            self.start_agent(node)
        t0 = time.monotonic()
        wait_until(lambda: all(map(self.node_ready, self.nodes)), 60, 0.1, "StewardNodes Ready")
        log(f"{self.suffix}: {len(self.nodes)} hosts Ready after {time.monotonic() - t0:.1f} s")

    def _spawn(self, args: list[str], who: str) -> subprocess.Popen[bytes]:
        scope = f"{self.suffix}-{who}"
        if scope not in self.scopes:
            self.scopes.append(scope)
        self.logs[who] = self.dir / f"{who}.log"
        with open(self.logs[who], "ab") as out:
            return self.b.reaper.spawn(
                [sys.executable, "-m", "steward.cli", *args],
                env=self.b.reaper.env(self.b.info.env(), scope=scope),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def start_controller(self) -> None:
        args = ["controller", "-n", self.namespace, *self.controller_args]
        self.controller = self._spawn(args, "controller")

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.b.reaper.stop_proc(self.controller, grace=20)

    def start_agent(self, node: str) -> None:
        args = ["--state-dir", str(self.dir / node), "agent", "--node", node, "--serve"]
        args += ["-n", self.namespace, "--label", f"{RUN_LABEL}={self.run}"]
        args += ["--label", f"{HOST_LABEL}={node}", *self.timings.args()]
        if node in self.ports:
            args += ["--metrics-port", str(self.ports[node]), "--metrics-addr", "127.0.0.1"]
        self.agents[node] = self._spawn(args, node)

    def node(self, name: str) -> dict[str, Any] | None:
        status, out = self.b.api.request("GET", f"{NODES_PATH}/{name}", resource="stewardnodes")
        return dict(out) if status == 200 else None

    def node_ready(self, name: str) -> bool:
        for who, proc in (("controller", self.controller), (name, self.agents.get(name))):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{who} exited with {proc.returncode}:\n{self.tail(who)}")
        return condition(self.node(name), "Ready").get("status") == "True"

    def agent_metrics(self, node: str) -> Samples:
        import urllib.request

        url = f"http://127.0.0.1:{self.ports[node]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return parse_metrics(r.read().decode())

    def tail(self, who: str, lines: int = 30) -> str:
        try:
            text = self.logs[who].read_text(errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> dict[str, list[str]]:
        return {who: e for who, path in self.logs.items() if (e := _errors(path))}

    def _services(self) -> list[str]:
        status, out = self.b.api.request(
            "GET", self.b.api.msvc_path(self.namespace), resource=PLURAL
        )
        if status != 200:
            return []
        return [str(o["metadata"]["name"]) for o in out.get("items", [])]

    def _delete_services(self) -> None:
        names = self._services()
        for name in names:
            self.b.api.delete(self.namespace, name)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not self._services(), 90, 0.25, "ManagedServices deleted")
        left = self._services()
        if left:
            log(f"{self.suffix}: {len(left)} ManagedService(s) not deleted: {left[:5]}")
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not marked(self.mark()), 30, 0.25, "daemons gone")
        if names and not left:
            log(f"{self.suffix}: {len(names)} ManagedService(s) deleted, their processes gone")

    def _scoped(self) -> list[int]:
        return [p for scope in self.scopes for p in marked_pids(self.b.reaper.run_id, scope)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in self.agents.values():  # a stopped agent can neither stop nor let go
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
        try:
            if self.namespace:
                if self.controller is None or self.controller.poll() is not None:
                    self.start_controller()  # the controller's finalizer goes only with it
                self._delete_services()
        finally:
            procs = [*self.agents.values(), *([self.controller] if self.controller else [])]
            for proc in procs:
                self.b.reaper.stop_proc(proc, grace=20)
            with contextlib.suppress(TimeoutError):  # fence helpers exit once their agent did
                wait_until(lambda: not self._scoped(), 5, 0.1, "fence helpers gone")
            for scope in self.scopes:
                n = self.b.reaper.sweep_scope(scope)
                if n:
                    log(f"{scope}: stopped {n} process(es) left running")
            for node in self.nodes:
                self.b.api.request("DELETE", f"{NODES_PATH}/{node}", resource="stewardnodes")
                self.b.api.request("DELETE", f"{LEASES_PATH}/steward-{node}", resource="leases")


def service_spec(
    bench: Bench, mark: str, place: dict[str, Any], protocol: str, period: float
) -> dict[str, Any]:
    """bench/tcp_listener.c on $(PORT), marked, placed."""
    spec = listener_spec(bench.listener(), protocol=protocol, period=period, backoff=1)
    spec["daemon"]["env"] = [{"name": MARK, "value": mark}]
    spec["placement"] = place
    return spec


def listener_names(bench: Bench) -> tuple[str, ...]:
    """Name prefixes of the listener (comm keeps 15 characters; the Python stand-in's is
    python's): the copies sampler reads the environment of those only."""
    return (Path(bench.listener()[0]).name[:15], "python")


def raw_start(bench: Bench) -> float:
    """The same daemon by hand: Popen, then a GET every 5 ms until the first 200."""
    port = free_port()
    t0 = time.monotonic()
    proc = bench.reaper.spawn(
        [*bench.listener(), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t = poll_http_200(port, 10)
    finally:
        bench.reaper.stop_proc(proc)
    if t is None:
        raise RuntimeError("raw listener never answered 200")
    return t - t0


# -- measure 1: host loss ----------------------------------------------------------------
def lose_host(bench: Bench, hosts: Hosts, w: Watcher, raw: RawWatch, name: str) -> dict[str, Any]:
    """SIGSTOP the agent of the service's host; the times until fenced and Ready elsewhere."""
    ns = hosts.namespace
    obj = bench.api.get(ns, name)
    where = placement(obj)
    node, epoch = str(where.get("nodeName")), int(where.get("epoch") or 0)
    pid = int((((obj or {}).get("status") or {}).get("runtime") or {}).get("pid") or 0)
    if node not in hosts.agents or not pid:
        raise RuntimeError(f"{name}: not running on a host of ours: {where}")
    agent = hosts.agents[node]
    time.sleep(1.0)  # the agent writes the fence helper's list every 0.25 s
    os.kill(agent.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        t_gone = wait_until(lambda: not alive(pid), 15, 0.005, f"{name}: old copy fenced")

        def moved(s: Sighting) -> bool:
            return s.is_ready and s.runtime.get("pid") not in (None, pid)

        s_ready = w.wait(name, moved, 60, since=t0)
        new_pid = int(s_ready.runtime["pid"])
        spawned = process_start_monotonic(new_pid)
        s_lost = w.first(name, lambda s: s.reason == "NodeLost", since=t0)
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    t_cont = time.monotonic()
    now = placement(bench.api.get(ns, name))
    if now.get("nodeName") in (None, node):
        raise RuntimeError(f"{name}: Ready again, but not elsewhere: {now}")
    unbound = bound = None  # when the watch delivered the controller's two writes
    for t, _, o in raw.of(name, t0):
        p = placement(o)
        if unbound is None and p.get("epoch") == epoch + 1 and not p.get("nodeName"):
            unbound = t - t0
        if bound is None and p.get("epoch") == epoch + 2 and p.get("nodeName"):
            bound = t - t0
    t_back = wait_until(lambda: hosts.node_ready(node), 30, 0.05, f"StewardNode {node} Ready")
    time.sleep(2.0)  # the continued agent catches up: it must neither start nor touch it
    stale = [
        s
        for s in w.log
        if s.name == name and s.t >= t_cont and (not s.is_ready or s.runtime.get("pid") != new_pid)
    ]
    out = {
        "from": node,
        "to": now.get("nodeName"),
        "epoch": [epoch, now.get("epoch")],
        "epoch_plus_2": now.get("epoch") == epoch + 2,
        "fenced": round(t_gone - t0, 4),
        "node_lost_seen": round(s_lost.t - t0, 4) if s_lost is not None else None,
        "unbound_seen": _r(unbound),
        "bound_elsewhere_seen": _r(bound),
        "spawned": round(spawned - t0, 4) if spawned is not None else None,
        "bind_to_spawn": _r(spawned - t0 - bound if spawned is not None and bound else None),
        "ready_elsewhere": round(s_ready.t - t0, 4),
        "spawn_to_ready": round(s_ready.t - spawned, 4) if spawned is not None else None,
        "host_ready_again_after_sigcont": round(t_back - t_cont, 3),
        "stale_sightings_after_sigcont": len(stale),
    }
    log(
        f"p7: {node} stopped: fenced {out['fenced']:.2f} s, Ready on {out['to']} after "
        f"{out['ready_elsewhere']:.2f} s (epoch {epoch} -> {now.get('epoch')})"
    )
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _stats(moves: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return summarize([m[key] for m in moves if m.get(key) is not None])


def host_loss(bench: Bench, runs: int) -> dict[str, Any]:
    hosts = Hosts(bench, "p7-loss", FAST, FAST_MONITOR)
    w: Watcher | None = None
    raw_watch: RawWatch | None = None
    copies: Copies | None = None
    name = "fenced"
    moves: list[dict[str, Any]] = []
    raw: list[float] = []
    try:
        hosts.start()
        w = bench.watch(hosts.namespace)
        raw_watch = RawWatch(bench.api, bench.api.msvc_path(hosts.namespace), PLURAL).start()
        failover = {
            "policy": "AfterFencing",
            "fenceAfterSeconds": FENCE_AFTER,
            "replaceAfterSeconds": REPLACE_AFTER,
        }
        place = {"nodeSelector": {RUN_LABEL: hosts.run}, "failover": failover}
        spec = service_spec(bench, hosts.mark(name), place, "http", 2)
        copies = Copies(hosts.mark(name), listener_names(bench)).start()
        t0 = time.monotonic()
        bench.api.create(hosts.namespace, msvc(name, spec))
        w.wait(name, ready, 60, since=t0)
        for _ in range(runs):
            raw += [raw_start(bench), raw_start(bench)]
            moves.append(lose_host(bench, hosts, w, raw_watch, name))
        errors = hosts.errors()
    finally:
        try:
            hosts.close()
        finally:
            if copies is not None:
                copies.stop()
            if w is not None:
                w.stop()
            if raw_watch is not None:
                raw_watch.stop()
    leftover = [p for p in (copies.pids() if copies else set()) if alive(p)]
    if leftover:
        raise RuntimeError(f"pids {leftover} of {name} outlived its ManagedService")
    ready_s = [m["ready_elsewhere"] for m in moves]
    raw_p50 = summarize(raw)["p50"]
    floor = REPLACE_AFTER + (raw_p50 or 0.0)
    return {
        "runs": runs,
        "agent_timings": asdict(FAST),
        "controller_args": FAST_MONITOR,
        "fence_after_seconds": FENCE_AFTER,
        "replace_after_seconds": REPLACE_AFTER,
        "fenced": {
            "values": [m["fenced"] for m in moves],
            **summarize([m["fenced"] for m in moves]),
        },
        **{
            k: _stats(moves, k)
            for k in (
                "node_lost_seen",
                "unbound_seen",
                "bound_elsewhere_seen",
                "spawned",
                "bind_to_spawn",
                "spawn_to_ready",
            )
        },
        "ready_elsewhere": {"values": ready_s, **summarize(ready_s)},
        "raw_start_200": {"values": [round(x, 4) for x in raw], **summarize(raw)},
        "floor": round(floor, 4),
        "ratio_p50": ratio(summarize(ready_s)["p50"], floor),
        "ratio_max": ratio(summarize(ready_s)["max"], floor),
        "max_copies": copies.max if copies else None,
        "copy_samples": len(copies.samples) if copies else 0,
        "all_epoch_plus_2": all(m["epoch_plus_2"] for m in moves),
        "stale_sightings_after_sigcont": sum(m["stale_sightings_after_sigcont"] for m in moves),
        "moves": moves,
        "errors_in_logs": errors,
    }


# -- measure 2: idle API requests per host -----------------------------------------------
@dataclass
class Window:
    """apiserver_request_total over one window, with what the harness itself sent."""

    seconds: float
    counts: dict[str, int]
    bench_sent: int
    renewals: dict[str, int] = field(default_factory=dict)
    agents: dict[str, dict[str, float]] = field(default_factory=dict)
    apiserver_own: dict[str, int] = field(default_factory=dict)
    """LISTs and WATCHes the audit log attributes to the apiserver itself (not in counts)."""

    def per_minute(self) -> dict[str, float]:
        return {k: v * 60 / self.seconds for k, v in self.counts.items()}


def _key(verb: str, resource: str, sub: str) -> str:
    return f"{verb} {resource}{'/' + sub if sub else ''}"


def measure_window(
    bench: Bench, seconds: float, hosts: Hosts | None = None, leases: RawWatch | None = None
) -> Window:
    """Sleep through ``seconds``; the apiserver's counters before and after (the harness
    sends nothing in between: its /metrics GET has no resource label), less the LISTs and
    WATCHes the audit log shows the apiserver's own loopback client completed meanwhile."""

    def agents() -> dict[str, Samples]:
        return {n: hosts.agent_metrics(n) for n in hosts.ports} if hosts else {}

    a0, sent0, req0 = agents(), sum(bench.api.sent.values()), bench.api.request_counts()
    t0, w0 = time.monotonic(), time.time()
    time.sleep(seconds)
    t1, w1 = time.monotonic(), time.time()
    req1, sent1, a1 = bench.api.request_counts(), sum(bench.api.sent.values()), agents()
    delta: Counter[tuple[str, str, str]] = request_delta(req0, req1)
    own: Counter[tuple[str, str, str]] = Counter()
    if bench.audit is not None:
        time.sleep(AUDIT_FLUSH)  # the log backend writes a completed request within a moment
        own = bench.audit.apiserver_own(w0, w1)
        for k, n in own.items():  # counted by the metric too, but not anyone's client
            delta[k] = max(0, delta[k] - n)
    counts = {_key(*k): n for k, n in sorted(delta.items(), key=lambda kv: -kv[1]) if n}
    per_agent = {
        n: {
            m: metric(a1[n], m) - metric(a0[n], m)
            for m in ("steward_status_patches_total", "steward_reconciles_total")
        }
        for n in a1
    }
    return Window(
        seconds=t1 - t0,
        counts=counts,
        bench_sent=sent1 - sent0,
        renewals=leases.modified([f"steward-{n}" for n in hosts.nodes], t0, t1)
        if leases and hosts
        else {},
        agents=per_agent,
        apiserver_own={_key(*k): n for k, n in sorted(own.items()) if n},
    )


def settle(w: Watcher, since: float, min_seconds: float) -> float:
    """Until the watch was quiet for QUIET_SECONDS and ``min_seconds`` passed since ``since``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < SETTLE_MAX:
        last = w.log[-1].t if w.log else 0.0
        now = time.monotonic()
        if now - last >= QUIET_SECONDS and now - since >= min_seconds:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def idle_api(bench: Bench, window: float) -> dict[str, Any]:
    time.sleep(2.0)  # what the host-loss part closed is counted before the first window
    log(f"p7: the apiserver alone for {window:.0f} s")
    background = measure_window(bench, window)
    hosts = Hosts(bench, "p7-idle", DEFAULTS, [], metrics=True)
    w: Watcher | None = None
    leases: RawWatch | None = None
    try:
        hosts.start()
        w = bench.watch(hosts.namespace)
        objs = []
        for node, letter in zip(hosts.nodes, HOST_LETTERS, strict=True):
            place = {"nodeSelector": {HOST_LABEL: node}}
            for i in range(SERVICES_PER_HOST):
                name = f"idle-{letter}-{i:02d}"
                objs.append(msvc(name, service_spec(bench, hosts.mark(name), place, "tcp", 10)))
        names = [o["metadata"]["name"] for o in objs]
        t0, _ = create_many(bench.api, hosts.namespace, objs)
        found = w.wait_all(names, ready, READY_TIMEOUT, since=t0)
        if len(found) != len(names):
            raise RuntimeError(f"only {len(found)}/{len(names)} Ready")
        t_ready = max(s.t for s in found.values())
        settled = settle(w, t_ready, 2 * DEFAULTS.status)
        leases = RawWatch(bench.api, LEASES_PATH, "leases").start()
        log(
            f"p7: {len(names)} Ready after {t_ready - t0:.1f} s, quiet after {settled:.0f} s; "
            f"controller + agents for {window:.0f} s"
        )
        with_controller = measure_window(bench, window, hosts, leases)
        hosts.stop_controller()
        time.sleep(3.0)  # its watches end now: counted before the next window
        log(f"p7: agents only for {window:.0f} s")
        agents_only = measure_window(bench, window, hosts, leases)
        watch_events = w.count(0.0, time.monotonic())
        errors = hosts.errors()
    finally:
        try:
            if leases is not None:
                leases.stop()
            if w is not None:
                w.stop()
        finally:
            hosts.close()
    return analyse(background, with_controller, agents_only, len(hosts.nodes), watch_events, errors)


def analyse(
    bg: Window,
    both: Window,
    agents: Window,
    n_hosts: int,
    watch_events: int,
    errors: dict[str, list[str]],
) -> dict[str, Any]:
    """Per-minute rates by verb/resource: agents = (agents only - apiserver alone) / hosts,
    controller = (controller + agents) - agents only; the agents' Lease PUTs exactly, from
    the watch on kube-node-lease (the rest of ``PUT leases`` is the apiserver's identity
    Lease). The apiserver's own LISTs and WATCHes are out of the windows' counts already
    (by the audit log's user); a resource Steward never requests is still counted as the
    apiserver's (e.g. LIST services: its ClusterIP repair, every 3 min), whichever window
    it fell into."""
    bg_m, both_m, agents_m = bg.per_minute(), both.per_minute(), agents.per_minute()
    renew_agents = sum(agents.renewals.values()) * 60 / agents.seconds
    renew_both = sum(both.renewals.values()) * 60 / both.seconds
    rows: dict[str, dict[str, Any]] = {}
    for k in sorted(set(bg_m) | set(both_m) | set(agents_m)):
        b, a, o = bg_m.get(k, 0.0), both_m.get(k, 0.0), agents_m.get(k, 0.0)
        resource = k.split(" ", 1)[1].split("/", 1)[0]
        if resource not in STEWARD_RESOURCES:
            per_host, controller, own = 0.0, 0.0, max(b, a, o)
        elif k == "PUT leases":
            per_host = renew_agents / n_hosts
            controller = max(0.0, (a - renew_both) - (o - renew_agents))
            own = o - renew_agents
        else:
            per_host, controller, own = max(0.0, o - b) / n_hosts, max(0.0, a - o), b
        rows[k] = {
            "background_per_min": round(b, 2),
            "controller_and_agents_per_min": round(a, 2),
            "agents_only_per_min": round(o, 2),
            "agents_per_host_per_min": round(per_host, 2),
            "controller_per_min": round(controller, 2),
            "apiserver_own_per_min": round(own, 2),
        }
    other = {
        k: r["agents_per_host_per_min"]
        for k, r in rows.items()
        if k != "PUT leases" and r["agents_per_host_per_min"] > 0
    }
    controller_rows = {
        k: r["controller_per_min"] for k, r in rows.items() if r["controller_per_min"] > 0
    }
    return {
        "hosts": n_hosts,
        "services_per_host": SERVICES_PER_HOST,
        "agent_timings": asdict(DEFAULTS),
        "controller_args": "defaults (node-monitor-period 5 s, grace 50 s)",
        "window_seconds": {
            "background": round(bg.seconds, 1),
            "controller_and_agents": round(both.seconds, 1),
            "agents_only": round(agents.seconds, 1),
        },
        "raw_counts": {  # apiserver_request_total, less what the audit log says it did itself
            "background": bg.counts,
            "controller_and_agents": both.counts,
            "agents_only": agents.counts,
        },
        "apiserver_own_by_audit": {
            "background": bg.apiserver_own,
            "controller_and_agents": both.apiserver_own,
            "agents_only": agents.apiserver_own,
        },
        "bench_requests_in_windows": bg.bench_sent + both.bench_sent + agents.bench_sent,
        "by_verb_resource": rows,
        "lease_renewals_agents_only": agents.renewals,
        "lease_renewals_with_controller": both.renewals,
        "renewals_per_host_per_min": round(renew_agents / n_hosts, 2),
        "other_agent_requests_per_host_per_min": {k: round(v, 2) for k, v in other.items()},
        "agent_requests_per_host_per_min": round(renew_agents / n_hosts + sum(other.values()), 2),
        "controller_requests_per_min": {k: round(v, 2) for k, v in controller_rows.items()},
        "controller_requests_per_min_total": round(sum(controller_rows.values()), 2),
        "apiserver_own_per_min": {
            k: r["apiserver_own_per_min"] for k, r in rows.items() if r["apiserver_own_per_min"]
        },
        "agent_metrics_agents_only": agents.agents,
        "agent_metrics_with_controller": both.agents,
        "watch_events_total": watch_events,
        "errors_in_logs": errors,
    }


# -- the scenario ------------------------------------------------------------------------
def run(bench: Bench) -> ScenarioResult:
    runs = 2 if bench.quick else 5
    window = 20.0 if bench.quick else 60.0
    t_start = time.monotonic()
    install_node_crd(bench)
    loss = host_loss(bench, runs)
    idle = idle_api(bench, window)
    data: dict[str, Any] = {"host_loss": loss, "idle_api": idle}
    fenced, moved, raw = loss["fenced"], loss["ready_elsewhere"], loss["raw_start_200"]
    other = idle["other_agent_requests_per_host_per_min"]
    top = ", ".join(f"{k} {v:g}" for k, v in sorted(other.items(), key=lambda kv: -kv[1])[:3])
    ctl = idle["controller_requests_per_min"]
    ctl_top = ", ".join(f"{k} {v:g}" for k, v in sorted(ctl.items(), key=lambda kv: -kv[1])[:3])
    per_renewal = 60 / DEFAULTS.renew
    targets = [
        Target(
            "host lost -> old copy killed (max)",
            fenced["max"],
            FENCE_LIMIT,
            steward=f"p50 {fmt(fenced['p50'])} / max {fmt(fenced['max'])} ({runs} runs)",
            baseline=f"fenceAfterSeconds {FENCE_AFTER:g} s",
        ),
        Target(
            "host lost -> Ready elsewhere (p50) / floor",
            loss["ratio_p50"],
            REPLACE_RATIO_TARGET,
            unit="x",
            steward=f"p50 {fmt(moved['p50'])} / max {fmt(moved['max'])} (max {loss['ratio_max']}x)",
            baseline=(
                f"floor {fmt(loss['floor'])} = replaceAfterSeconds {REPLACE_AFTER:g} s + "
                f"raw start -> 200 p50 {fmt(raw['p50'])}"
            ),
        ),
        Target(
            "copies running at once (max, sampled every 100 ms)",
            loss["max_copies"],
            1,
            unit="",
            steward=f"{loss['max_copies']} in {loss['copy_samples']} samples",
            baseline="1",
        ),
        Target(
            "idle: agent API requests / host / min",
            idle["agent_requests_per_host_per_min"],
            per_renewal,
            unit="",
            steward=(
                f"{idle['agent_requests_per_host_per_min']:g}: Lease renewals "
                f"{idle['renewals_per_host_per_min']:g}" + (f"; {top}" if top else "")
            ),
            baseline=f"{per_renewal:g} Lease renewals (every {DEFAULTS.renew:g} s)",
        ),
        Target(
            "idle: controller API requests / min",
            idle["controller_requests_per_min_total"],
            None,
            unit="",
            steward=f"{idle['controller_requests_per_min_total']:g}"
            + (f": {ctl_top}" if ctl_top else ""),
            baseline="LIST leases every 5 s (12 / min)",
        ),
    ]
    plot(bench, data)
    return ScenarioResult(KEY, TITLE, data, targets, time.monotonic() - t_start)


def plot(bench: Bench, data: dict[str, Any]) -> None:
    fig, axes = plots.figure(1, 2)
    ax = axes[0][0]
    loss = data["host_loss"]
    moves = loss["moves"]
    xs = list(range(1, len(moves) + 1))
    for key, label, marker in (
        ("fenced", "old copy killed", "v"),
        ("node_lost_seen", "NodeLost seen", "x"),
        ("unbound_seen", "unbound by the controller", "s"),
        ("bound_elsewhere_seen", "bound elsewhere", "D"),
        ("spawned", "new copy spawned", "o"),
        ("ready_elsewhere", "Ready elsewhere", "^"),
    ):
        pts = [(x, m[key]) for x, m in zip(xs, moves, strict=True) if m.get(key) is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=label, marker=marker)
    ax.axhline(FENCE_AFTER, color="grey", linestyle=":", label="fenceAfterSeconds")
    ax.axhline(loss["floor"], color="grey", linestyle="--", label="floor (replace + raw start)")
    ax.axhline(loss["floor"] * REPLACE_RATIO_TARGET, color="red", linestyle=":", label="target")
    ax.set_xticks(xs)
    ax.set(title="SIGSTOP of the host's agent ->", xlabel="run", ylabel="s")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    rows = data["idle_api"]["by_verb_resource"]
    keys = list(rows)
    ys = range(len(keys))
    for offset, column, label in (
        (-0.27, "agents_per_host_per_min", "agents, per host"),
        (0.0, "controller_per_min", "controller"),
        (0.27, "apiserver_own_per_min", "the apiserver itself"),
    ):
        ax.barh([y + offset for y in ys], [rows[k][column] for k in keys], 0.27, label=label)
    ax.set_yticks(list(ys), keys, fontsize=7)
    ax.axvline(60 / DEFAULTS.renew, color="grey", linestyle="--", label="6 renewals / min")
    ax.set(title="idle API requests per minute", xlabel="requests / min")
    ax.legend(fontsize=7)
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
