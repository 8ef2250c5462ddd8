"""P4 detection: how soon status tells the truth after a crash or a health failure.

* crash — K Ready daemons (tcp_listener, TCP probe) get SIGKILL one after
  another, spread over a probe period so the kill lands at every phase of the
  probe schedule; measured: kill -> the watch delivers ``state != active``.
  Done for periodSeconds 10 (the default) and 2, to show what the time depends
  on. Raw baseline: a supervisor blocked in waitpid() on its own child.
* unhealthy — K Ready daemons answer 503 once their health file is removed
  (periodSeconds 2, failureThreshold 3); measured: removal -> ``Ready=False``,
  next to period x threshold, and next to a bare thread probing the same
  endpoint with the same period and threshold (raw baseline).
* container — K Ready busybox httpd containers (period 10 s): the container's
  main process gets SIGKILL from the host; measured: kill -> ``state != active``
  (Docker's ``die`` event wakes the resource).
* restart — K daemons with ``restartPolicy: Always`` and ``backoff.initialSeconds:
  0`` (HTTP probe, period 10 s); measured: SIGKILL -> the new process answers
  HTTP 200. Raw baseline: a supervisor blocked in waitpid() that spawns again.
* local / library — the same crash under ``steward local FILE -o json`` (kill ->
  the row with ``state != active`` is printed) and in the library
  (``Service.start()``, then kill -> the first ``Service.is_running`` that says
  False, asked every millisecond).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bench.harness import plots
from bench.harness.cleanup import log
from bench.harness.cluster import msvc
from bench.harness.context import Bench
from bench.harness.fleet import listener_spec
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import free_port, http_status, summarize, tcp_open
from bench.harness.watch import Watcher, ready

KEY = "p4"
TITLE = "P4 detection: crash and unhealthy endpoint -> status"
UNHEALTHY_PERIOD, THRESHOLD = 2.0, 3
CRASH_LIMIT = 0.1
"""Seconds from SIGKILL to status, at any probe period (the loop is woken by a pidfd)."""
CONTAINER_LIMIT = 0.5
RESTART_LIMIT = 0.15
HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def _create_ready(bench: Bench, ns: str, w: Watcher, objs: list[dict[str, Any]]) -> None:
    t0 = time.monotonic()
    for o in objs:
        bench.api.create(ns, o)
    names = [o["metadata"]["name"] for o in objs]
    found = w.wait_all(names, ready, 60, since=t0)
    if len(found) != len(names):
        raise RuntimeError(f"only {len(found)}/{len(names)} Ready")


def crash_group(bench: Bench, ns: str, w: Watcher, k: int, period: float) -> list[float]:
    prefix = f"crash{int(period)}"
    spec = listener_spec(bench.listener(), protocol="tcp", period=period, backoff=60)
    objs = [msvc(f"{prefix}-{i}", spec) for i in range(k)]
    _create_ready(bench, ns, w, objs)
    time.sleep(period)  # every service past its first, start-up probing
    rng = random.Random(4)
    kills: dict[str, float] = {}
    base = time.monotonic()
    for i, o in enumerate(objs):
        name = o["metadata"]["name"]
        time.sleep(max(0.0, base + i * period / k + rng.uniform(0, 0.2) - time.monotonic()))
        s = w.latest(name)
        pid = s.runtime.get("pid") if s else None
        if not isinstance(pid, int):
            raise RuntimeError(f"{name}: no pid in status")
        kills[name] = time.monotonic()
        os.kill(pid, signal.SIGKILL)
    out = []
    for name, t_kill in kills.items():
        s = w.wait(name, lambda s: s.state not in (None, "active"), period + 30, since=t_kill)
        out.append(s.t - t_kill)
    return out


def container_crash(bench: Bench, ns: str, w: Watcher, k: int) -> list[float]:
    """SIGKILL of each container's main process (from the host) -> ``state != active``."""
    image = bench.busybox()
    spec = {
        "container": {
            "image": image,
            "imagePullPolicy": "Never",
            "command": HTTPD,
            "containerPort": 8080,
            "stopGracePeriodSeconds": 1,
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 10},
        },
        "backoff": {"initialSeconds": 60},
    }
    objs = [msvc(f"ctr-{i}", spec) for i in range(k)]
    _create_ready(bench, ns, w, objs)
    time.sleep(1.0)
    out = []
    for o in objs:
        name = o["metadata"]["name"]
        s = w.latest(name)
        cid = s.runtime.get("containerId") if s else None
        if not isinstance(cid, str):
            raise RuntimeError(f"{name}: no containerId in status")
        pid = int(_docker("inspect", "-f", "{{.State.Pid}}", cid))
        time.sleep(random.uniform(0.2, 1.0))
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        seen = w.wait(name, lambda s: s.state not in (None, "active"), 30, since=t_kill)
        out.append(seen.t - t_kill)
    return out


def _docker(*args: str) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.strip()


def _until_200(port: int, timeout: float) -> float | None:
    """time.monotonic() of the first HTTP 200 on ``port``, asked every millisecond."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(port, timeout=0.5) == 200:
            return time.monotonic()
        time.sleep(0.001)
    return None


def restart_group(bench: Bench, ns: str, w: Watcher, k: int) -> list[float]:
    """restartPolicy Always, no back-off: SIGKILL -> HTTP 200 from the new process."""
    spec = listener_spec(bench.listener(), protocol="http", period=10, backoff=0)
    spec["restartPolicy"] = "Always"
    objs = [msvc(f"again-{i}", spec) for i in range(k)]
    _create_ready(bench, ns, w, objs)
    time.sleep(1.0)
    out = []
    for o in objs:
        name = o["metadata"]["name"]
        for _ in range(2):
            s = w.latest(name)
            pid = s.runtime.get("pid") if s else None
            port = urlsplit(s.uri or "").port if s else None
            if not isinstance(pid, int) or not port:
                raise RuntimeError(f"{name}: no pid or endpoint in status")
            time.sleep(random.uniform(0.3, 1.0))
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            t_ok = _until_200(port, 30)
            if t_ok is None:
                raise RuntimeError(f"{name}: not answering after a restart")
            out.append(t_ok - t_kill)
            w.wait(name, lambda s, p=pid: s.runtime.get("pid") not in (None, p), 30, since=t_kill)
    return out


def raw_restart(bench: Bench, k: int) -> list[float]:
    """A supervisor blocked in waitpid() that spawns the same argv again at once."""
    out = []
    for _ in range(k):
        port = free_port()
        argv = [*bench.listener(), str(port)]
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = bench.reaper.spawn(argv, **quiet)
        if _until_200(port, 10) is None:
            raise RuntimeError("raw listener never answered")
        t_kill = time.monotonic()
        proc.kill()
        proc.wait()
        bench.reaper.forget(proc)
        again = bench.reaper.spawn(argv, **quiet)
        t_ok = _until_200(port, 10)
        bench.reaper.stop_proc(again)
        if t_ok is not None:
            out.append(t_ok - t_kill)
    return out


def _listener_pid(state: Path, name: str) -> int | None:
    from steward.engine.store import ServiceStore
    from steward.runtimes.base import ServiceIdentity
    from steward.runtimes.process import ProcessRecord

    runtime = ServiceStore(state).runtime_dir(ServiceIdentity("default", name))
    record = ProcessRecord.load(runtime / "daemon.pid")
    return record.pid if record is not None else None


def local_crash(bench: Bench, k: int) -> list[float]:
    """``steward local FILE -o json``: SIGKILL -> the row with ``state != active`` printed."""
    from bench.scenarios.p1_latency import steward_cli

    work = bench.work_dir / "p4-local"
    work.mkdir(exist_ok=True)
    spec = listener_spec(bench.listener(), protocol="tcp", period=10, backoff=60)
    names = [f"local-{i}" for i in range(k)]
    docs = [msvc(n, spec) | {"metadata": {"name": n, "namespace": "default"}} for n in names]
    manifest = work / "services.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    state = work / "state"
    argv = [*steward_cli(), "--state-dir", str(state), "local", str(manifest), "-o", "json"]
    proc = bench.reaper.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    rows: list[tuple[float, str, str]] = []
    cond = threading.Condition()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.monotonic()
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "name" in row and "state" in row:
                with cond:
                    rows.append((t, str(row["name"]).split("/")[-1], str(row["state"])))
                    cond.notify_all()

    def wait_row(name: str, pred: Any, since: float, timeout: float) -> float:
        with cond:
            ok = cond.wait_for(
                lambda: any(n == name and t >= since and pred(st) for t, n, st in rows), timeout
            )
            if not ok:
                raise RuntimeError(f"steward local: no matching row for {name}")
            return min(t for t, n, st in rows if n == name and t >= since and pred(st))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out = []
    try:
        for n in names:
            wait_row(n, lambda st: st == "active", 0.0, 60)
        time.sleep(1.0)
        for n in names:
            pid = _listener_pid(state, n)
            if pid is None:
                raise RuntimeError(f"steward local: no pid file for {n}")
            time.sleep(random.uniform(0.2, 1.0))
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            out.append(wait_row(n, lambda st: st != "active", t_kill, 30) - t_kill)
    finally:
        bench.reaper.stop_proc(proc, grace=20)
        reader.join(timeout=5)
    return out


def library_crash(bench: Bench, k: int) -> list[float]:
    """``Service.start()``; SIGKILL -> the first ``is_running`` (asked every ms) saying False."""
    from steward.engine.service import Service

    state = bench.work_dir / "p4-library"
    spec = listener_spec(bench.listener(), protocol="tcp", period=10, backoff=60)
    spec["restartPolicy"] = "Never"
    out = []
    for i in range(k):
        svc = Service.from_manifest(msvc(f"lib-{i}", spec), state_dir=state)
        try:
            if not svc.start(timeout=30):
                raise RuntimeError(f"library start failed: {svc.status.last_error}")
            pid = svc.status.runtime["pid"]
            time.sleep(random.uniform(0.1, 0.3))
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while svc.is_running and time.monotonic() - t_kill < 30:
                time.sleep(0.001)
            out.append(time.monotonic() - t_kill)
        finally:
            svc.stop(timeout=10, force=True)
    return out


def raw_crash(bench: Bench, k: int) -> list[float]:
    """A supervisor blocked in waitpid(): kill -> wait() returns."""
    out = []
    for _ in range(k):
        port = free_port()
        proc = bench.reaper.spawn(
            [*bench.listener(), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not tcp_open(port) and time.monotonic() < deadline:
            time.sleep(0.005)
        seen: list[float] = []

        def wait(p: subprocess.Popen[bytes] = proc, out: list[float] = seen) -> None:
            p.wait()
            out.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
        t_kill = time.monotonic()
        proc.kill()
        waiter.join(timeout=10)
        bench.reaper.forget(proc)
        if seen:
            out.append(seen[0] - t_kill)
    return out


class RawProber(threading.Thread):
    """Probes one endpoint every ``period`` s; records when ``threshold`` failures in a row end."""

    def __init__(self, port: int, period: float, threshold: int, phase: float) -> None:
        super().__init__(daemon=True)
        self.port, self.period, self.threshold, self.phase = port, period, threshold, phase
        self.unhealthy_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        failures = 0
        if self.stop.wait(self.phase):
            return
        while not self.stop.is_set():
            status = http_status(self.port, timeout=1.0)
            failures = 0 if status is not None and 200 <= status < 400 else failures + 1
            if failures >= self.threshold:
                self.unhealthy_at = time.monotonic()
                return
            self.stop.wait(self.period)


def unhealthy_group(
    bench: Bench, ns: str, w: Watcher, k: int, health_dir: Path
) -> tuple[list[float], list[float]]:
    objs = []
    files = []
    for i in range(k):
        f = health_dir / f"healthy-{i}"
        f.touch()
        files.append(f)
        spec = listener_spec(
            bench.listener(),
            protocol="http",
            period=UNHEALTHY_PERIOD,
            threshold=THRESHOLD,
            health_file=str(f),
            backoff=60,
        )
        objs.append(msvc(f"sick-{i}", spec))
    _create_ready(bench, ns, w, objs)
    time.sleep(UNHEALTHY_PERIOD)
    rng = random.Random(5)
    probers: list[RawProber] = []
    for o in objs:
        s = w.latest(o["metadata"]["name"])
        port = urlsplit(s.uri or "").port if s else None
        if not port:
            raise RuntimeError(f"{o['metadata']['name']}: no endpoint in status")
        p = RawProber(port, UNHEALTHY_PERIOD, THRESHOLD, rng.uniform(0, UNHEALTHY_PERIOD))
        p.start()
        probers.append(p)
    time.sleep(UNHEALTHY_PERIOD + 0.1)
    removed: dict[str, float] = {}
    base = time.monotonic()
    for i, (o, f) in enumerate(zip(objs, files, strict=True)):
        time.sleep(max(0.0, base + i * UNHEALTHY_PERIOD / k - time.monotonic()))
        removed[o["metadata"]["name"]] = time.monotonic()
        f.unlink()
    steward, raw = [], []
    limit = UNHEALTHY_PERIOD * THRESHOLD + 30
    for (name, t_rm), prober in zip(removed.items(), probers, strict=True):
        s = w.wait(name, lambda s: s.ready == "False", limit, since=t_rm)
        steward.append(s.t - t_rm)
        prober.join(timeout=limit)
        prober.stop.set()
        if prober.unhealthy_at is not None:
            raw.append(prober.unhealthy_at - t_rm)
    return steward, raw


def run(bench: Bench) -> ScenarioResult:
    k = 3 if bench.quick else 8
    t_start = time.monotonic()
    op, w, _ = bench.operator("p4")
    health_dir = bench.work_dir / "p4"
    health_dir.mkdir(exist_ok=True)
    try:
        crash10 = crash_group(bench, op.namespace, w, k, 10.0)
        log(f"p4: crash (period 10) detected after {summarize(crash10)}")
        crash2 = crash_group(bench, op.namespace, w, k, 2.0)
        log(f"p4: crash (period 2) detected after {summarize(crash2)}")
        sick, sick_raw = unhealthy_group(bench, op.namespace, w, k, health_dir)
        log(f"p4: unhealthy detected after {summarize(sick)}")
        restarts = restart_group(bench, op.namespace, w, k)
        log(f"p4: SIGKILL -> HTTP 200 again after {summarize(restarts)}")
        ctr = container_crash(bench, op.namespace, w, k)
        log(f"p4: container exit detected after {summarize(ctr)}")
    finally:
        op.close()
    raw = raw_crash(bench, k)
    restarts_raw = raw_restart(bench, k)
    local = local_crash(bench, k)
    log(f"p4: steward local crash detected after {summarize(local)}")
    library = library_crash(bench, k)
    log(f"p4: library crash seen after {summarize(library)}")
    budget = UNHEALTHY_PERIOD * THRESHOLD + 0.5
    data: dict[str, Any] = {
        "k": k,
        "crash_period10": {"values": _round(crash10), **summarize(crash10)},
        "crash_period2": {"values": _round(crash2), **summarize(crash2)},
        "crash_raw_waitpid": {"values": _round(raw), **summarize(raw)},
        "unhealthy": {
            "period": UNHEALTHY_PERIOD,
            "threshold": THRESHOLD,
            "values": _round(sick),
            **summarize(sick),
        },
        "unhealthy_raw_prober": {"values": _round(sick_raw), **summarize(sick_raw)},
        "container_exit": {"values": _round(ctr), **summarize(ctr)},
        "restart_http200": {"values": _round(restarts), **summarize(restarts)},
        "restart_raw_waitpid": {"values": _round(restarts_raw), **summarize(restarts_raw)},
        "local_crash": {"values": _round(local), **summarize(local)},
        "library_crash": {"values": _round(library), **summarize(library)},
    }
    c10, c2, u = data["crash_period10"], data["crash_period2"], data["unhealthy"]
    ce, rs, rr = data["container_exit"], data["restart_http200"], data["restart_raw_waitpid"]
    lc, lib = data["local_crash"], data["library_crash"]
    waitpid = f"waitpid p50 {fmt(data['crash_raw_waitpid']['p50'])}"
    targets = [
        Target(
            "crash -> status, period 10 s (p95)",
            c10["p95"],
            CRASH_LIMIT,
            steward=f"p50 {fmt(c10['p50'])} / p95 {fmt(c10['p95'])}",
            baseline=waitpid,
        ),
        Target(
            "crash -> status, period 2 s (p95)",
            c2["p95"],
            CRASH_LIMIT,
            steward=f"p50 {fmt(c2['p50'])} / p95 {fmt(c2['p95'])}",
            baseline=waitpid,
        ),
        Target(
            "steward local: crash -> row, period 10 s (p95)",
            lc["p95"],
            CRASH_LIMIT,
            steward=f"p50 {fmt(lc['p50'])} / p95 {fmt(lc['p95'])}",
            baseline=waitpid,
        ),
        Target(
            "library: crash -> is_running False (p95)",
            lib["p95"],
            CRASH_LIMIT,
            steward=f"p50 {fmt(lib['p50'])} / p95 {fmt(lib['p95'])}",
            baseline=waitpid,
        ),
        Target(
            "container exit -> status, period 10 s (p95)",
            ce["p95"],
            CONTAINER_LIMIT,
            steward=f"p50 {fmt(ce['p50'])} / p95 {fmt(ce['p95'])}",
            baseline="Docker's die event",
        ),
        Target(
            "restartPolicy Always, SIGKILL -> HTTP 200 again (p50)",
            rs["p50"],
            RESTART_LIMIT,
            steward=f"p50 {fmt(rs['p50'])} / p95 {fmt(rs['p95'])}",
            baseline=f"waitpid + spawn p50 {fmt(rr['p50'])} / p95 {fmt(rr['p95'])}",
        ),
        Target(
            f"unhealthy -> Ready=False, {UNHEALTHY_PERIOD:g} s x {THRESHOLD} (p95)",
            u["p95"],
            budget,
            steward=f"p50 {fmt(u['p50'])} / p95 {fmt(u['p95'])}",
            baseline=(
                f"bare prober p50 {fmt(data['unhealthy_raw_prober']['p50'])} / "
                f"p95 {fmt(data['unhealthy_raw_prober']['p95'])}"
            ),
        ),
    ]
    plot(bench, data, budget)
    return ScenarioResult(KEY, TITLE, data, targets, time.monotonic() - t_start)


def _round(xs: list[float]) -> list[float]:
    return [round(x, 4) for x in xs]


def plot(bench: Bench, data: dict[str, Any], budget: float) -> None:
    fig, axes = plots.figure(1, 2)
    ax = axes[0][0]
    groups = [
        ("crash, period 10", data["crash_period10"]["values"]),
        ("crash, period 2", data["crash_period2"]["values"]),
        ("local", data["local_crash"]["values"]),
        ("library", data["library_crash"]["values"]),
        ("container", data["container_exit"]["values"]),
        ("restart -> 200", data["restart_http200"]["values"]),
        ("raw waitpid", data["crash_raw_waitpid"]["values"]),
    ]
    for i, (label, vals) in enumerate(groups):
        ax.scatter([i] * len(vals), vals, alpha=0.7)
        ax.text(i, max(vals or [0]) * 1.05 + 0.01, label, ha="center", fontsize=7, rotation=30)
    ax.axhline(CRASH_LIMIT, color="red", linestyle=":", label=f"target {CRASH_LIMIT:g} s")
    ax.axhline(CONTAINER_LIMIT, color="orange", linestyle=":", label="container target")
    ax.set_xticks([])
    ax.set(title="SIGKILL -> state != active (restart: -> HTTP 200)", ylabel="s")
    ax.legend()
    ax = axes[0][1]
    groups = [
        ("Steward", data["unhealthy"]["values"]),
        ("bare prober", data["unhealthy_raw_prober"]["values"]),
    ]
    for i, (label, vals) in enumerate(groups):
        ax.scatter([i] * len(vals), vals, alpha=0.7)
        ax.text(i, max(vals or [0]) + 0.2, label, ha="center", fontsize=8)
    ax.axhline(budget, color="red", linestyle=":", label="period x threshold + 0.5 s")
    ax.set_xticks([])
    ax.set(title="health file removed -> Ready=False", ylabel="s")
    ax.legend()
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
