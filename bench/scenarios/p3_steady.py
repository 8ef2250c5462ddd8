"""P3 steady state: N Ready daemons probed every 10 s, nothing changing.

Takes over P2's fleet of the same size when P2 ran (else builds one), waits
until the watch has been quiet for a while, then measures over a window
(60 s; quick: 20 s): the operator's CPU (% of one core), status patches
(must be 0: nothing changed), watch events and API requests, and the probe
latency histogram from its /metrics. At the same time a bare asyncio loop
probes the same ports on the same period (bench/harness/rawprobe.py): the raw
cost of the same work. Targets: the operator's CPU at most CPU_RATIO_TARGET x
the bare prober's (a ratio, as the machine is shared), no status patch and no
API request in the window.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from bench.harness import plots
from bench.harness.cleanup import log
from bench.harness.context import Bench
from bench.harness.fleet import Fleet, build, listener_spec, operator_requests
from bench.harness.operator import Samples, metric
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.scenarios.p2_scale import P3_SIZE, PERIOD, READY_TIMEOUT

KEY = "p3"
TITLE = "P3 steady state: N Ready services, probes every 10 s"
QUIET_SECONDS = 5.0
SETTLE_MAX = 60.0
LATENCY = "steward_probe_latency_seconds"
CPU_RATIO_TARGET = 1.3
"""Steady-state CPU at most this multiple of the bare asyncio prober's, measured alongside."""


def histogram(samples: Samples) -> dict[float, float]:
    """Cumulative bucket counts of the probe latency histogram, summed over flavors."""
    out: dict[float, float] = {}
    for key, value in samples.items():
        if not key.startswith(LATENCY + "_bucket{"):
            continue
        le = key.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + value
    return out


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """histogram_quantile: linear interpolation inside the bucket holding the rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_bound
            span = c - prev_count
            frac = (rank - prev_count) / span if span else 0.0
            return prev_bound + (b - prev_bound) * frac
        prev_bound, prev_count = b, c
    return None


def settle(fleet: Fleet) -> float:
    """Wait until the watch saw no event for QUIET_SECONDS (at most SETTLE_MAX); seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < SETTLE_MAX:
        last = fleet.watcher.log[-1].t if fleet.watcher.log else 0.0
        if time.monotonic() - last >= QUIET_SECONDS:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def ports_of(fleet: Fleet) -> list[int]:
    ports = []
    for name in fleet.names:
        s = fleet.watcher.latest(name)
        if s is not None and s.uri:
            port = urlsplit(s.uri).port
            if port:
                ports.append(port)
    return ports


def run(bench: Bench) -> ScenarioResult:
    n = P3_SIZE[bench.quick]
    window = 20.0 if bench.quick else 60.0
    t_start = time.monotonic()
    fleet: Fleet | None = bench.shared.pop("fleet", None)
    built: dict[str, Any] | None = None
    if fleet is None or fleet.n != n:
        if fleet is not None:
            fleet.close()
        spec = listener_spec(bench.listener(), protocol="tcp", period=PERIOD)
        fleet, built = build(bench, "p3", n, spec, READY_TIMEOUT)
    try:
        if len(fleet.ready) != n:
            raise RuntimeError(f"only {len(fleet.ready)}/{n} services Ready; no steady state")
        settled = settle(fleet)
        op, api = fleet.op, bench.api
        ports = ports_of(fleet)
        raw = bench.reaper.spawn(
            [
                sys.executable,
                "-m",
                "bench.harness.rawprobe",
                "--period",
                str(PERIOD),
                "--duration",
                str(window),
                *map(str, ports),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        log(f"p3: {n} Ready, quiet after {settled:.0f} s; measuring {window:.0f} s")
        m0, req0, cpu0 = op.metrics(), api.request_counts(), op.cpu_seconds()
        op.profile_window("steady", window)
        t0 = time.monotonic()
        usage = op.start_sampling(interval=1.0)
        time.sleep(window)
        t1 = time.monotonic()
        m1, req1, cpu1 = op.metrics(), api.request_counts(), op.cpu_seconds()
        op.stop_sampling()
        out, _ = raw.communicate(timeout=PERIOD + 30)
        bench.reaper.forget(raw)
        raw_result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        elapsed = t1 - t0
        h0, h1 = histogram(m0), histogram(m1)
        delta = {b: h1.get(b, 0.0) - h0.get(b, 0.0) for b in h1}
        probes = metric(m1, LATENCY + "_count") - metric(m0, LATENCY + "_count")
        patches = metric(m1, "steward_status_patches_total") - metric(
            m0, "steward_status_patches_total"
        )
        reconciles = metric(m1, "steward_reconciles_total") - metric(m0, "steward_reconciles_total")
        cpu_pct = (cpu1 - cpu0) / elapsed * 100
        raw_pct = raw_result["cpu_seconds"] / window * 100
        data: dict[str, Any] = {
            "n": n,
            "window_seconds": round(elapsed, 1),
            "settle_seconds": round(settled, 1),
            "built_here": built,
            "operator_cpu_percent": round(cpu_pct, 2),
            "operator_cpu_seconds": round(cpu1 - cpu0, 2),
            "operator_rss_mb": round(op.rss() / 1024 / 1024, 1),
            "cpu_series": [(round(t - t0, 1), round(c, 3)) for t, _, c in usage.series],
            "status_patches_per_minute": round(patches * 60 / elapsed, 2),
            "watch_events_in_window": fleet.watcher.count(t0, t1),
            "reconciles_per_second": round(reconciles / elapsed, 1),
            "probes_per_second": round(probes / elapsed, 1),
            "expected_probes_per_second": round(n / PERIOD, 1),
            "probe_latency_buckets": {str(b): c for b, c in sorted(delta.items())},
            "probe_latency_p50": _r(quantile(delta, 0.5)),
            "probe_latency_p95": _r(quantile(delta, 0.95)),
            "probe_latency_p99": _r(quantile(delta, 0.99)),
            "api_requests_in_window": operator_requests(req0, req1, 0),
            "raw_prober": {**raw_result, "cpu_percent": round(raw_pct, 2)},
        }
    finally:
        fleet.close()
    cpu_ratio = round(cpu_pct / raw_pct, 3) if raw_pct > 0 else None
    data["operator_cpu_ratio"] = cpu_ratio
    api_total = operator_api_requests(data["api_requests_in_window"])
    targets = [
        Target(
            f"N={n} operator CPU / bare prober's",
            cpu_ratio,
            CPU_RATIO_TARGET,
            unit="x",
            steward=f"{data['operator_cpu_percent']} % ({data['reconciles_per_second']} reconciles/s)",
            baseline=f"{raw_pct:.2f} % (bare asyncio prober)",
        ),
        Target(
            f"N={n} operator CPU (% of a core)",
            data["operator_cpu_percent"],
            None,
            unit="%",
            steward=f"{data['operator_cpu_percent']} %",
            baseline=f"{raw_pct:.2f} %",
        ),
        Target(
            f"N={n} idle API requests in the window",
            api_total,
            0,
            unit="",
            steward=f"{api_total} ({data['watch_events_in_window']} watch events)",
            baseline="0 (nothing changed)",
        ),
        Target(
            f"N={n} idle status patches / min",
            data["status_patches_per_minute"],
            0.0,
            unit="",
            steward=f"{data['status_patches_per_minute']} /min; {data['watch_events_in_window']} watch events",
            baseline="0 (nothing changed)",
        ),
        Target(
            "probe latency p50 / p95",
            data["probe_latency_p95"],
            None,
            steward=f"{fmt(data['probe_latency_p50'])} / {fmt(data['probe_latency_p95'])} (histogram)",
            baseline=(f"{fmt(raw_result['latency']['p50'])} / {fmt(raw_result['latency']['p95'])}"),
        ),
    ]
    plot(bench, data)
    return ScenarioResult(KEY, TITLE, data, targets, time.monotonic() - t_start)


def operator_api_requests(requests: dict[str, int]) -> int:
    """The window's API requests the operator could have made (fleet.control_planes_own:
    the apiserver's identity Lease and its own informers' re-watches are left out)."""
    return requests["total"]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def plot(bench: Bench, data: dict[str, Any]) -> None:
    fig, axes = plots.figure(1, 2)
    ax = axes[0][0]
    series = data["cpu_series"]
    pts = [
        (t1, (c1 - c0) / (t1 - t0) * 100)
        for (t0, c0), (t1, c1) in itertools.pairwise(series)
        if t1 > t0
    ]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], label="operator")
    ax.axhline(data["raw_prober"]["cpu_percent"], color="grey", linestyle="--", label="bare prober")
    ax.axhline(
        data["raw_prober"]["cpu_percent"] * CPU_RATIO_TARGET,
        color="red",
        linestyle=":",
        label="target",
    )
    ax.set(title=f"CPU, N={data['n']}", xlabel="s into the window", ylabel="% of one core")
    ax.legend()
    ax = axes[0][1]
    buckets = data["probe_latency_buckets"]
    bounds = list(buckets)
    counts = [buckets[b] - (buckets[bounds[i - 1]] if i else 0) for i, b in enumerate(bounds)]
    ax.bar(range(len(bounds)), counts)
    ax.set_xticks(range(len(bounds)), [f"≤{b}" for b in bounds], rotation=45, fontsize=8)
    ax.set(title="operator probe latency (probes per bucket)", xlabel="seconds", ylabel="probes")
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
