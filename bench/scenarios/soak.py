"""SOAK: N Ready daemons for 30 minutes with crashes and spec changes; does the operator's
memory or CPU per service grow with the time it has run?

Opt-in (30 min; ``python -m bench.run --only SOAK``, ``make soak``, ``pytest -m soak``):
the default run leaves it out. One operator gets N listeners (the P2 fleet's spec, TCP
probes every 10 s); after they are all Ready, every CHURN_SECONDS a round SIGKILLs
KILLS random daemons (``restartPolicy: Always`` brings them back after the back-off)
and changes the spec of SPEC_CHANGES others (a new env value: a new generation, so the
old process is stopped and a new one started). The operator's RSS and CPU are sampled
every SAMPLE_SECONDS. Measured: RSS at the end of the warm-up (the median of the minute
after it) against the last minute's median, the RSS slope after warm-up, CPU per minute
then and at the end, and that every service is Ready on its latest generation when the
churn stops. Target: RSS growth after warm-up at most GROWTH_LIMIT_MB.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import statistics
import time
from typing import Any

import psutil

from bench.harness import plots
from bench.harness.cleanup import RUN_ENV, SCOPE_ENV, log
from bench.harness.context import Bench
from bench.harness.fleet import MB, Fleet, build, listener_spec, operator_requests
from bench.harness.operator import metric
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.watch import Sighting

KEY = "soak"
TITLE = "SOAK: N services for 30 minutes with crashes and spec changes"
SIZE = {False: 1000, True: 100}
DURATION = {False: 1800.0, True: 240.0}
WARMUP = {False: 300.0, True: 60.0}
"""The first minutes fill caches, pools and the allocator's arenas: growth counts after this."""
CHURN_SECONDS = 30.0
KILLS = 10
SPEC_CHANGES = 10
SAMPLE_SECONDS = 5.0
GROWTH_LIMIT_MB = 5.0
PERIOD = 10.0
READY_TIMEOUT = 240.0
SETTLE_TIMEOUT = 180.0


def settings(quick: bool) -> tuple[int, float, float]:
    """N, duration and warm-up; ``STEWARD_BENCH_SOAK_SECONDS`` / ``_SERVICES`` override."""
    n = int(os.environ.get("STEWARD_BENCH_SOAK_SERVICES", SIZE[quick]))
    duration = float(os.environ.get("STEWARD_BENCH_SOAK_SECONDS", DURATION[quick]))
    warmup = min(WARMUP[quick], duration / 3)
    return n, duration, warmup


def ours(bench: Bench, scope: str, pid: int) -> bool:
    """The pid is a daemon this run's operator started (its environment carries the run's
    marker and scope): a pid read from a status may already belong to someone else."""
    with contextlib.suppress(psutil.Error):
        env = psutil.Process(pid).environ()
        return env.get(RUN_ENV) == bench.reaper.run_id and env.get(SCOPE_ENV) == scope
    return False


def kill_some(bench: Bench, fleet: Fleet, rng: random.Random, k: int) -> int:
    """SIGKILL the main process of k random services that are running now."""
    killed = 0
    for name in rng.sample(fleet.names, min(len(fleet.names), k * 3)):
        if killed >= k:
            break
        s = fleet.watcher.latest(name)
        pid = (s.runtime.get("pid") if s is not None and s.state == "active" else None) or 0
        if int(pid) <= 0 or not ours(bench, fleet.op.scope, int(pid)):
            continue
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed += 1
    return killed


def change_some(bench: Bench, fleet: Fleet, rng: random.Random, k: int, round_: int) -> list[str]:
    """A new env value for k random services: a new generation each."""
    names = rng.sample(fleet.names, min(len(fleet.names), k))
    for name in names:
        patch = {"spec": {"daemon": {"env": [{"name": "SOAK_ROUND", "value": str(round_)}]}}}
        bench.api.merge_patch(fleet.namespace, name, patch)
    return names


def current(s: Sighting | None) -> bool:
    """Ready on the latest generation."""
    return (
        s is not None
        and s.is_ready
        and s.generation is not None
        and s.observed_generation == s.generation
    )


def wait_settled(fleet: Fleet, timeout: float) -> tuple[int, float]:
    """Wait until every service is Ready on its latest generation; (how many are, seconds)."""
    t0 = time.monotonic()
    while True:
        ok = sum(current(fleet.watcher.latest(n)) for n in fleet.names)
        if ok == fleet.n or time.monotonic() - t0 > timeout:
            return ok, time.monotonic() - t0
        time.sleep(1.0)


def window(
    series: list[tuple[float, float, float]], t0: float, t1: float
) -> list[tuple[float, float, float]]:
    return [p for p in series if t0 <= p[0] <= t1]


def slope_mb_per_hour(points: list[tuple[float, float, float]]) -> float | None:
    """Least-squares slope of RSS over time."""
    if len(points) < 3:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] / MB for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def cpu_percent(points: list[tuple[float, float, float]]) -> float | None:
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][2] - points[0][2]) / (points[-1][0] - points[0][0]) * 100


def run(bench: Bench) -> ScenarioResult:
    n, duration, warmup = settings(bench.quick)
    rng = random.Random(int(os.environ.get("STEWARD_BENCH_SOAK_SEED", "20261204")))
    spec = listener_spec(bench.listener(), protocol="tcp", period=PERIOD)
    t_start = time.monotonic()
    fleet, built = build(bench, "soak", n, spec, READY_TIMEOUT)
    rounds: list[dict[str, Any]] = []
    try:
        if len(fleet.ready) != n:
            raise RuntimeError(f"only {len(fleet.ready)}/{n} services Ready; nothing to soak")
        op = fleet.op
        log(f"soak: {n} Ready; churning for {duration:.0f} s (warm-up {warmup:.0f} s)")
        m0, req0 = op.metrics(), bench.api.request_counts()
        usage = op.start_sampling(interval=SAMPLE_SECONDS)
        t0 = time.monotonic()
        round_ = 0
        while time.monotonic() - t0 < duration:
            round_ += 1
            t_round = time.monotonic()
            killed = kill_some(bench, fleet, rng, KILLS)
            changed = change_some(bench, fleet, rng, SPEC_CHANGES, round_)
            rounds.append({"t": round(t_round - t0, 1), "killed": killed, "changed": len(changed)})
            if round_ % 10 == 0:
                rss = usage.series[-1][1] / MB if usage.series else 0.0
                log(f"soak: round {round_}, {t_round - t0:.0f} s, RSS {rss:.1f} MB")
            time.sleep(max(0.0, t_round + CHURN_SECONDS - time.monotonic()))
        t_churn_end = time.monotonic()
        settled, settle_s = wait_settled(fleet, SETTLE_TIMEOUT)
        op.stop_sampling()
        m1, req1 = op.metrics(), bench.api.request_counts()
        series = list(usage.series)
        hwm = op.vm_hwm()
        errors = op.errors_in_log()
    finally:
        fleet.close()
    after_warmup = window(series, t0 + warmup, t_churn_end)
    first = window(series, t0 + warmup, t0 + warmup + 60)
    last = window(series, t_churn_end - 60, t_churn_end)
    rss_first = statistics.median(p[1] for p in first) / MB if first else None
    rss_last = statistics.median(p[1] for p in last) / MB if last else None
    growth = None if rss_first is None or rss_last is None else round(rss_last - rss_first, 1)
    cpu_first, cpu_last = cpu_percent(first), cpu_percent(last)
    elapsed = t_churn_end - t0
    data: dict[str, Any] = {
        "n": n,
        "duration_seconds": round(elapsed, 1),
        "warmup_seconds": warmup,
        "built": built,
        "rounds": len(rounds),
        "kills": sum(r["killed"] for r in rounds),
        "spec_changes": sum(r["changed"] for r in rounds),
        "status_patches": metric(m1, "steward_status_patches_total")
        - metric(m0, "steward_status_patches_total"),
        "api_requests": operator_requests(req0, req1, 0),
        "rss_at_start_mb": round(series[0][1] / MB, 1) if series else None,
        "rss_after_warmup_mb": None if rss_first is None else round(rss_first, 1),
        "rss_at_end_mb": None if rss_last is None else round(rss_last, 1),
        "rss_growth_after_warmup_mb": growth,
        "rss_slope_after_warmup_mb_per_hour": _r(slope_mb_per_hour(after_warmup)),
        "rss_peak_hwm_mb": round(hwm / MB, 1),
        "cpu_percent_after_warmup": _r(cpu_first),
        "cpu_percent_at_end": _r(cpu_last),
        "ready_on_latest_generation_at_end": settled,
        "settle_seconds": round(settle_s, 1),
        "series": [(round(t - t0, 1), round(r / MB, 2), round(c, 2)) for t, r, c in series],
        "operator_errors": errors,
    }
    per_min = len(rounds) * 60 / elapsed if elapsed else 0.0
    targets = [
        Target(
            f"N={n}, {elapsed / 60:.0f} min of churn: RSS growth after warm-up",
            growth,
            GROWTH_LIMIT_MB,
            unit="MB",
            steward=(
                f"{fmt(rss_first, 'MB')} -> {fmt(rss_last, 'MB')}; slope "
                f"{fmt(data['rss_slope_after_warmup_mb_per_hour'], 'MB')}/h"
            ),
            baseline=(
                f"{data['kills']} kills + {data['spec_changes']} spec changes "
                f"({per_min:.1f} rounds/min)"
            ),
        ),
        Target(
            "  CPU after warm-up / at the end (% of a core)",
            cpu_last,
            None,
            unit="%",
            steward=f"{fmt(cpu_first, '%')} / {fmt(cpu_last, '%')}",
            baseline=f"{data['status_patches']:.0f} status patches in all",
        ),
        Target(
            "  services not Ready on their latest generation after the churn",
            float(n - settled),
            0.0,
            unit="",
            steward=f"{n - settled} ({settled}/{n} Ready {settle_s:.0f} s after the last round)",
            baseline="-",
        ),
    ]
    plot(bench, data)
    return ScenarioResult(KEY, TITLE, data, targets, time.monotonic() - t_start)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def plot(bench: Bench, data: dict[str, Any]) -> None:
    series = data["series"]
    if len(series) < 2:
        return
    fig, axes = plots.figure(1, 2)
    ax = axes[0][0]
    ax.plot([p[0] / 60 for p in series], [p[1] for p in series], label="operator RSS")
    ax.axvline(data["warmup_seconds"] / 60, color="grey", linestyle="--", label="end of warm-up")
    if data["rss_after_warmup_mb"] is not None:
        ax.axhline(
            data["rss_after_warmup_mb"] + GROWTH_LIMIT_MB,
            color="red",
            linestyle=":",
            label="target",
        )
    ax.set(title=f"RSS, N={data['n']}", xlabel="minutes of churn", ylabel="MB")
    ax.legend()
    ax = axes[0][1]
    pts = [
        (b[0] / 60, (b[2] - a[2]) / (b[0] - a[0]) * 100)
        for a, b in itertools.pairwise(series)
        if b[0] > a[0]
    ]
    ax.plot([p[0] for p in pts], [p[1] for p in pts])
    ax.set(title="CPU", xlabel="minutes of churn", ylabel="% of one core")
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
