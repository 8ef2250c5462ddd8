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
SIZES_FULL = (100, 300, 1000)
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
        order = ("raw", "steward") if i % 2 == 0 else ("steward", "raw")
        row: dict[str, Any] = {"n": n, "order": list(order)}
        for which in order:
            if which == "raw":
                row["raw"] = raw_fleet(bench, n)
                row["raw"]["api_create_seconds"] = round(api_only(bench, n, spec), 3)
                log(f"p2 raw N={n}: all listening in {row['raw']['all_listening_seconds']} s")
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


def result(bench: Bench, rows: list[dict[str, Any]], seconds: float) -> ScenarioResult:
    big = rows[-1]
    st, raw = big["steward"], big["raw"]
    n = big["n"]
    note = "" if n == 1000 else f"largest N in this run is {n}; the target is for N = 1000"
    targets = [
        Target(
            f"N={n} all Ready",
            st["all_ready_seconds"],
            60.0,
            steward=f"{fmt(st['all_ready_seconds'])} ({st['ready']}/{n} Ready)",
            baseline=(
                f"{fmt(raw['all_listening_seconds'])} all listening; "
                f"apiserver alone admits them in {fmt(raw['api_create_seconds'])}"
            ),
            note=note,
        ),
        Target(
            f"N={n} operator peak RSS",
            st["rss_peak_hwm_mb"],
            150.0,
            unit="MB",
            steward=f"{st['rss_peak_hwm_mb']} MB (idle {st['rss_before_mb']} MB)",
            baseline=f"listeners {raw['listeners_rss_total_mb']} MB total",
            note=note,
        ),
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
    return ScenarioResult(KEY, TITLE, {"sizes": rows}, targets, seconds)


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
