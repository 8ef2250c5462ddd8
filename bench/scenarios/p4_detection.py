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
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    finally:
        op.close()
    raw = raw_crash(bench, k)
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
    }
    c10, c2, u = data["crash_period10"], data["crash_period2"], data["unhealthy"]
    targets = [
        Target(
            "crash -> status, period 10 s (p95)",
            c10["p95"],
            1.0,
            steward=f"p50 {fmt(c10['p50'])} / p95 {fmt(c10['p95'])}",
            baseline=f"waitpid p50 {fmt(data['crash_raw_waitpid']['p50'])}",
        ),
        Target(
            "crash -> status, period 2 s (p95)",
            c2["p95"],
            1.0,
            steward=f"p50 {fmt(c2['p50'])} / p95 {fmt(c2['p95'])}",
            baseline=f"waitpid p50 {fmt(data['crash_raw_waitpid']['p50'])}",
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
        ("raw waitpid", data["crash_raw_waitpid"]["values"]),
    ]
    for i, (label, vals) in enumerate(groups):
        ax.scatter([i] * len(vals), vals, alpha=0.7)
        ax.text(i, max(vals or [0]) + 0.2, label, ha="center", fontsize=8)
    ax.axhline(1.0, color="red", linestyle=":", label="target 1 s")
    ax.set_xticks([])
    ax.set(title="SIGKILL -> state != active", ylabel="s")
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
