"""P6 container: ``kubectl apply`` -> Ready next to ``docker run`` -> first healthy probe.

The same locally built busybox image and argv (``httpd -f -p 8080 -h /www``),
published on 127.0.0.1. Raw: the ``docker run -d`` CLI, then a GET every 5 ms
until the first 200 (and, as a reference, the same through the Engine API, without
the CLI's start-up). Steward: apply until the watch delivers ``Ready=True``; kubectl's
own time (apply until the watch delivers ADDED) is reported apart, as in P1 and P5.
Rounds alternate which goes first.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from bench.harness import docker, plots
from bench.harness.cleanup import log
from bench.harness.cluster import msvc
from bench.harness.context import Bench
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import diff, free_port, poll_http_200, summarize
from bench.harness.watch import Watcher, deleted, ready

KEY = "p6"
TITLE = "P6 container: apply -> Ready vs docker run -> first 200"
ARGV = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def spec(image: str) -> dict[str, Any]:
    return {
        "container": {
            "image": image,
            "imagePullPolicy": "Never",
            "command": ARGV,
            "containerPort": 8080,
            "stopGracePeriodSeconds": 1,
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 10},
        },
    }


def raw(bench: Bench, image: str, via_api: bool = False) -> float:
    port = free_port()
    t0 = time.monotonic()
    start = docker.run_via_api if via_api else docker.run_detached
    cid = start(bench.reaper, image, port, ARGV)
    try:
        t = poll_http_200(port, 60)
    finally:
        docker.remove(cid)
    if t is None:
        raise RuntimeError("raw container never answered 200")
    return t - t0


def steward(bench: Bench, ns: str, w: Watcher, image: str, i: int) -> tuple[float, float]:
    """(apply -> Ready, kubectl's own part: apply -> the watch delivers ADDED)."""
    name = f"web-{i}"
    t0 = time.monotonic()
    bench.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(msvc(name, spec(image))))
    s = w.wait(name, ready, 120, since=t0)
    added = w.first(name, lambda x: x.type == "ADDED", since=t0)
    bench.api.delete(ns, name)
    w.wait(name, deleted, 60, since=t0)
    if added is None:
        raise RuntimeError(f"{name}: the watch never delivered ADDED")
    return s.t - t0, added.t - t0


def run(bench: Bench) -> ScenarioResult:
    image = bench.busybox()
    rounds, warmup = (4, 1) if bench.quick else (15, 2)
    t_start = time.monotonic()
    op, w, _ = bench.operator("p6")
    vals: dict[str, list[float]] = {"steward": [], "kubectl": [], "raw": [], "raw_api": []}
    try:
        for i in range(warmup + rounds):
            order = ("steward", "raw", "raw_api") if i % 2 == 0 else ("raw_api", "raw", "steward")
            got = {}
            for mode in order:
                if mode == "steward":
                    got["steward"], got["kubectl"] = steward(bench, op.namespace, w, image, i)
                else:
                    got[mode] = raw(bench, image, via_api=mode == "raw_api")
            if i >= warmup:
                for mode, v in got.items():
                    vals[mode].append(v)
                log(
                    f"p6 round {i - warmup + 1}/{rounds}: steward {got['steward']:.3f} s"
                    f" (kubectl {got['kubectl']:.3f} s) raw {got['raw']:.3f} s"
                    f" (engine API {got['raw_api']:.3f} s)"
                )
    finally:
        op.close()
    st, rw = summarize(vals["steward"]), summarize(vals["raw"])
    n = min(len(vals["steward"]), len(vals["raw"]))
    after = summarize([vals["steward"][i] - vals["kubectl"][i] for i in range(n)])
    kc, api = summarize(vals["kubectl"]), summarize(vals["raw_api"])
    data: dict[str, Any] = {
        "image": image,
        "values": {k: [round(x, 4) for x in v] for k, v in vals.items()},
        "steward": st,
        "raw": rw,
        "overhead_p50": diff(st["p50"], rw["p50"]),
        "overhead_p95": diff(st["p95"], rw["p95"]),
        "overhead_paired": summarize([vals["steward"][i] - vals["raw"][i] for i in range(n)]),
        "kubectl": kc,
        "steward_after_kubectl": after,
        "overhead_after_kubectl_p50": diff(after["p50"], rw["p50"]),
        "overhead_after_kubectl_p95": diff(after["p95"], rw["p95"]),
        "raw_engine_api": api,
        "operator_errors": op.errors_in_log(),
    }
    targets = [
        Target(
            "apply -> Ready overhead p50, without kubectl's own time",
            data["overhead_after_kubectl_p50"],
            0.06,
            steward=f"p50 {fmt(after['p50'])}",
            baseline=f"p50 {fmt(rw['p50'])} (docker run)",
        ),
        Target(
            "apply -> Ready overhead p95, without kubectl's own time",
            data["overhead_after_kubectl_p95"],
            None,
            steward=f"p95 {fmt(after['p95'])}",
            baseline=f"p95 {fmt(rw['p95'])} (docker run)",
        ),
        Target(
            "  same, with kubectl (p50 / p95; kubectl p50 alone)",
            data["overhead_p50"],
            None,
            steward=f"p50 {fmt(st['p50'])} / p95 {fmt(st['p95'])}; kubectl {fmt(kc['p50'])}",
            baseline=f"p50 {fmt(rw['p50'])} / p95 {fmt(rw['p95'])}",
        ),
        Target(
            "  raw through the Engine API, without the docker CLI (p50)",
            diff(after["p50"], api["p50"]),
            None,
            steward=f"p50 {fmt(after['p50'])} (without kubectl)",
            baseline=f"p50 {fmt(api['p50'])} (create + start, then GET every 5 ms)",
        ),
    ]
    fig, axes = plots.figure(1, 1, size=(7, 4.5))
    ax = axes[0][0]
    plots.cdf(ax, vals["steward"], "Steward (kubectl apply -> Ready)")
    plots.cdf(ax, vals["raw"], "docker run -> first 200")
    ax.set(xlabel="s", ylabel="fraction of rounds")
    ax.legend()
    plots.save(fig, results_dir(bench.quick) / f"{KEY}.png", TITLE)
    return ScenarioResult(KEY, TITLE, data, targets, time.monotonic() - t_start)
