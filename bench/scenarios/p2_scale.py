"""P2 scale: N tiny TCP daemons created at once, until every one is Ready.

For each N (100, 300, 1,000; quick: 100) a fresh operator gets N
ManagedServices POSTed at once (8 connections). Measured: time until the watch
has seen all of them Ready, the operator's peak RSS (VmHWM) and CPU seconds,
its status patches and reconciles (its /metrics), and every API request it
made (the apiserver's ``apiserver_request_total``, minus the harness's own
creates). The raw baseline spawns the same N listeners by hand and polls each
port until it accepts; raw and Steward alternate which goes first per N.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from typing import Any

import psutil

from bench.harness import plots
from bench.harness.cleanup import kill_pids, log
from bench.harness.context import Bench
from bench.harness.fleet import MB, build, create_many, fleet_objects, listener_spec
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import POLL_INTERVAL, tcp_open

KEY = "p2"
TITLE = "P2 scale: N daemons created at once -> all Ready"
SIZES_FULL = (100, 300, 3000, 5000, 1000)
"""The growth sweep (P2'); 1,000 last, so P3 can take that fleet over while nothing else runs."""
SIZES_QUICK = (100,)
PERIOD = 10.0
READY_TIMEOUT = 240.0
P3_SIZE = {True: 100, False: 1000}
"""P3 takes over P2's fleet of this size (quick/full) instead of building its own."""


def raw_fleet(bench: Bench, n: int) -> dict[str, Any]:
    """Spawn N listeners by hand; time until every port accepts a connection."""
    holders = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        holders.append(s)
    ports = [s.getsockname()[1] for s in holders]
    for s in holders:
        s.close()
    argv = bench.listener()
    procs = []
    t0 = time.monotonic()
    try:
        for port in ports:
            procs.append(
                bench.reaper.spawn(
                    [*argv, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        t_spawned = time.monotonic()
        pending = set(ports)
        deadline = t0 + 120
        while pending and time.monotonic() < deadline:
            pending -= {p for p in list(pending) if tcp_open(p, timeout=0.5)}
            if pending:
                time.sleep(POLL_INTERVAL)
        t_all = time.monotonic()
        rss = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss += psutil.Process(p.pid).memory_info().rss
    finally:
        kill_pids([p.pid for p in procs], grace=2)
        for p in procs:
            p.wait(timeout=10)
            bench.reaper.forget(p)
    return {
        "n": n,
        "spawn_seconds": round(t_spawned - t0, 3),
        "all_listening_seconds": round(t_all - t0, 3) if not pending else None,
        "listeners_rss_total_mb": round(rss / MB, 1),
        "listener_rss_each_kb": round(rss / max(n, 1) / 1024, 0),
    }


def api_only(bench: Bench, n: int, spec: dict[str, Any]) -> float:
    """Seconds the apiserver alone takes to admit the same N objects (no operator running)."""
    ns = bench.namespace(f"p2-api-{n}")
    t0, t1 = create_many(bench.api, ns, fleet_objects("d", n, spec))
    bench.api.request("DELETE", bench.api.msvc_path(ns))  # no operator: no finalizers
    return t1 - t0


def run(bench: Bench) -> ScenarioResult:
    sizes: tuple[int, ...] = SIZES_QUICK if bench.quick else SIZES_FULL
    if os.environ.get("STEWARD_BENCH_P2_SIZES"):  # a development knob, e.g. "1000"
        sizes = tuple(int(x) for x in os.environ["STEWARD_BENCH_P2_SIZES"].split(","))
    handover = "p3" in bench.selected and P3_SIZE[bench.quick] in sizes
    spec = listener_spec(bench.listener(), protocol="tcp", period=PERIOD)
    rows: list[dict[str, Any]] = []
    t_start = time.monotonic()
    for i, n in enumerate(sizes):
        order = ("raw", "floor", "steward") if i % 2 == 0 else ("steward", "floor", "raw")
        row: dict[str, Any] = {"n": n, "order": list(order)}
        for which in order:
            if which == "raw":
                row["raw"] = raw_fleet(bench, n)
                row["raw"]["api_create_seconds"] = round(api_only(bench, n, spec), 3)
                log(f"p2 raw N={n}: all listening in {row['raw']['all_listening_seconds']} s")
                continue
            if which == "floor":
                floor, row["floor"] = build(bench, f"p2-floor-{n}", n, spec, READY_TIMEOUT, True)
                floor.close()
                log(
                    f"p2 kopf floor N={n}: all Ready in {row['floor']['all_ready_seconds']} s, "
                    f"peak RSS {row['floor']['rss_peak_hwm_mb']} MB"
                )
                continue
            fleet, measured = build(bench, f"p2-{n}", n, spec, READY_TIMEOUT)
            row["steward"] = measured
            log(
                f"p2 steward N={n}: all Ready in {measured['all_ready_seconds']} s, "
                f"peak RSS {measured['rss_peak_hwm_mb']} MB, CPU {measured['cpu_seconds']} s"
            )
            if handover and n == P3_SIZE[bench.quick]:
                bench.shared["fleet"] = fleet
            else:
                fleet.close()
        rows.append(row)
    return result(bench, rows, time.monotonic() - t_start)


def per_service(m: dict[str, Any], n: int) -> dict[str, float | None]:
    """The growth sweep's measures, per service."""
    t = m.get("all_ready_seconds")
    return {
        "ready_ms": None if t is None else round(t / n * 1000, 2),
        "rss_kb": round((m["rss_peak_hwm_mb"] - (m["rss_before_mb"] or 0)) * 1024 / n, 1),
        "cpu_ms": round(m["cpu_seconds"] / n * 1000, 2),
        "api_requests": round(m["api_requests_plus_5s"]["total"] / n, 2),
    }


def result(bench: Bench, rows: list[dict[str, Any]], seconds: float) -> ScenarioResult:
    rows = sorted(rows, key=lambda r: r["n"])
    for r in rows:
        r["per_service"] = {k: per_service(r[k], r["n"]) for k in ("steward", "floor")}
    big = next((r for r in rows if r["n"] == 1000), rows[-1])
    st, raw, floor = big["steward"], big["raw"], big["floor"]
    n = big["n"]
    note = "" if n == 1000 else f"largest N in this run is {n}; the target is for N = 1000"
    requests_each = st["api_requests_plus_5s"]["total"] / n
    floor_rss = floor["rss_peak_hwm_mb"]
    growth = growth_targets(rows)
    targets = [
        Target(
            f"N={n} all Ready",
            st["all_ready_seconds"],
            20.0,
            steward=f"{fmt(st['all_ready_seconds'])} ({st['ready']}/{n} Ready)",
            baseline=(
                f"{fmt(raw['all_listening_seconds'])} all listening; "
                f"apiserver alone admits them in {fmt(raw['api_create_seconds'])}"
            ),
            note=note,
        ),
        Target(
            f"N={n} API requests per service",
            round(requests_each, 2),
            4.0,
            unit="",
            steward=f"{requests_each:.2f} per service ({st['api_requests_plus_5s']['total']} in all)",
            baseline=f"kopf floor {floor['api_requests_plus_5s']['total'] / n:.2f} per service",
            note=note,
        ),
        Target(
            f"N={n} operator peak RSS",
            st["rss_peak_hwm_mb"],
            150.0,
            unit="MB",
            steward=f"{st['rss_peak_hwm_mb']} MB (idle {st['rss_before_mb']} MB)",
            baseline=f"kopf floor {floor_rss} MB; listeners {raw['listeners_rss_total_mb']} MB total",
            note=note,
        ),
        Target(
            f"N={n} peak RSS / kopf floor",
            round(st["rss_peak_hwm_mb"] / floor_rss, 2) if floor_rss else None,
            1.1,
            unit="x",
            steward=f"{st['rss_peak_hwm_mb']} MB",
            baseline=f"a kopf operator that only writes Ready: {floor_rss} MB "
            f"(all Ready in {fmt(floor['all_ready_seconds'])})",
            note=note,
        ),
        *growth,
        Target(
            f"N={n} operator CPU to all Ready",
            st["cpu_seconds"],
            None,
            unit="s",
            steward=f"{st['cpu_seconds']} CPU-s; {st['status_patches']:.0f} status patches",
            baseline=f"{st['api_requests_plus_5s']['total']} API requests in all",
        ),
    ]
    plot(bench, rows)
    plot_growth(bench, rows)
    return ScenarioResult(KEY, TITLE, {"sizes": rows}, targets, seconds)


def growth_targets(rows: list[dict[str, Any]]) -> list[Target]:
    """P2': per-service cost at the largest N against N = 1,000 (flat or falling: <= 1.1x)."""
    by_n = {r["n"]: r for r in rows}
    if 1000 not in by_n or max(by_n) <= 1000:
        return []
    big = max(by_n)
    out = []
    for key, label in (
        ("ready_ms", "time to Ready"),
        ("rss_kb", "RSS"),
        ("cpu_ms", "CPU-s"),
        ("api_requests", "API requests"),
    ):
        at_big = by_n[big]["per_service"]["steward"][key]
        at_1k = by_n[1000]["per_service"]["steward"][key]
        ratio = None if not at_big or not at_1k else round(at_big / at_1k, 2)
        floor_big = by_n[big]["per_service"]["floor"][key]
        out.append(
            Target(
                f"growth: {label} per service, N={big} / N=1000",
                ratio,
                1.1,
                unit="x",
                steward=f"{at_big} at N={big}, {at_1k} at N=1000",
                baseline=f"kopf floor {floor_big} at N={big}",
            )
        )
    return out


def plot_growth(bench: Bench, rows: list[dict[str, Any]]) -> None:
    """P2': per-service cost against N, Steward beside the kopf floor."""
    ns = [r["n"] for r in rows]
    fig, axes = plots.figure(1, 4, size=(18, 4.5))
    for ax, (key, title, unit) in zip(
        axes[0],
        (
            ("ready_ms", "time to all Ready / N", "ms"),
            ("rss_kb", "peak RSS growth / N", "KiB"),
            ("cpu_ms", "CPU to all Ready / N", "ms"),
            ("api_requests", "API requests / N", "requests"),
        ),
        strict=True,
    ):
        for who, style in (("steward", "o-"), ("floor", "s--")):
            vals = [r["per_service"][who][key] for r in rows]
            ax.plot(ns, [float("nan") if v is None else v for v in vals], style, label=who)
        ax.set(title=title, xlabel="N", ylabel=unit, xscale="log")
        ax.set_ylim(bottom=0)
        ax.legend()
    plots.save(fig, results_dir(bench.quick) / f"{KEY}-growth.png", "P2' growth: cost per service")


def plot(bench: Bench, rows: list[dict[str, Any]]) -> None:
    ns = [r["n"] for r in rows]
    fig, axes = plots.figure(2, 3, size=(15, 8))
    ax = axes[0][0]
    ax.plot(
        ns, [r["steward"]["all_ready_seconds"] or float("nan") for r in rows], "o-", label="Steward"
    )
    ax.plot(
        ns, [r["raw"]["all_listening_seconds"] or float("nan") for r in rows], "s--", label="raw"
    )
    ax.plot(
        ns,
        [r["raw"]["api_create_seconds"] for r in rows],
        "^:",
        label="apiserver alone: create N",
    )
    ax.axhline(60, color="red", linestyle=":", label="target (N=1000)")
    ax.set(title="time until all Ready", xlabel="N", ylabel="s")
    ax.legend()
    ax = axes[0][1]
    ax.plot(ns, [r["steward"]["rss_peak_hwm_mb"] for r in rows], "o-", label="operator peak RSS")
    ax.plot(ns, [r["raw"]["listeners_rss_total_mb"] for r in rows], "s--", label="the N listeners")
    ax.axhline(150, color="red", linestyle=":", label="target")
    ax.set(title="memory", xlabel="N", ylabel="MB")
    ax.legend()
    ax = axes[0][2]
    ax.plot(ns, [r["steward"]["cpu_seconds"] for r in rows], "o-")
    ax.set(title="operator CPU seconds until all Ready", xlabel="N", ylabel="CPU s")
    ax = axes[1][0]
    kinds = ["PATCH managedservices/status", "PATCH managedservices", "POST events"]
    bottom = [0.0] * len(rows)
    for kind in [*kinds, "other"]:
        vals = []
        for r in rows:
            req = r["steward"]["api_requests_plus_5s"]
            if kind == "other":
                vals.append(req["total"] - sum(req.get(k, 0) for k in kinds))
            else:
                vals.append(req.get(kind, 0))
        ax.bar([str(x) for x in ns], vals, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set(title="operator API requests (to all Ready + 5 s)", xlabel="N", ylabel="requests")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    for r in rows:
        curve = r["steward"]["ready_curve"]  # sorted times at evenly spaced ranks
        steps = max(len(curve) - 1, 1)
        ax.plot(curve, [r["n"] * i / steps for i in range(len(curve))], label=f"N={r['n']}")
    ax.set(title="Ready count over time", xlabel="s since first create", ylabel="Ready")
    ax.legend()
    ax = axes[1][2]
    per = [r["steward"]["cpu_seconds"] / r["n"] * 1000 for r in rows]
    ax.plot(ns, per, "o-")
    ax.set(title="CPU per service", xlabel="N", ylabel="CPU ms / service")
    ax.set_ylim(bottom=0)
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
