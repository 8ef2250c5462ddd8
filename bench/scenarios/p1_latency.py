"""P1 latency: a daemon with an HTTP endpoint, from "asked for" to "Ready".

Five ways of starting the same argv (``python -m http.server PORT``), one after
the other in a shuffled order within each round, so machine noise hits them
all alike:

* operator — ``kubectl apply`` until the watch delivers status ``Ready=True``
  (split into kubectl, operator pick-up, and process start until Ready);
* raw — ``Popen`` by hand, then a GET every 5 ms until the first 200;
* local — ``steward local FILE --until-ready``: a fresh interpreter, so its
  total includes start-up and imports; "after start-up" counts from the header
  line, printed once the manifests are loaded;
* library — ``Service.from_manifest(...).start()`` in this process;
* seed (reference) — the ZenML way in a few lines: the daemon's fresh
  interpreter imports the framework before serving (as ZenML's daemon
  entrypoint does) and the caller checks once, then every 1 s
  (LocalDaemonService.start -> poll_service_status).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.harness import plots
from bench.harness.cluster import msvc
from bench.harness.context import Bench
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import (
    diff,
    free_port,
    percentile,
    poll_http_200,
    process_start_monotonic,
    summarize,
)
from bench.harness.watch import deleted, ready

KEY = "p1"
TITLE = "P1 latency: apply -> Ready (HTTP daemon)"
MODES = ("operator", "raw", "local", "library", "seed")
READY_TIMEOUT = 60.0

SEED_ENTRY = (
    "import runpy, sys\n"
    "import steward.engine.service  # the daemon entrypoint imports its framework first\n"
    "sys.argv = ['http.server', sys.argv[1], '--bind', '127.0.0.1']\n"
    "runpy.run_module('http.server', run_name='__main__')\n"
)


def daemon_argv(port: str) -> list[str]:
    return [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"]


def spec() -> dict[str, Any]:
    return {
        "daemon": {"command": daemon_argv("$(PORT)")},
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 10},
        },
    }


def steward_cli() -> list[str]:
    script = Path(sys.executable).parent / "steward"
    return [str(script)] if script.exists() else [sys.executable, "-m", "steward.cli"]


class P1:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.dir = bench.work_dir / "p1"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.local_file = self.dir / "web-local.yaml"
        self.local_file.write_text(yaml.safe_dump(msvc("web-local", spec())))
        self.lib_state = self.dir / "library-state"
        self.local_state = self.dir / "local-state"

    # -- the five ways -----------------------------------------------------
    def operator(self, i: int) -> dict[str, float]:
        name = f"web-{i}"
        t0 = time.monotonic()
        self.b.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump(msvc(name, spec())))
        s_ready = self.w.wait(name, ready, READY_TIMEOUT, since=t0)
        added = self.w.first(name, lambda s: s.type == "ADDED", since=t0)
        out = {"total": s_ready.t - t0}
        pid = s_ready.runtime.get("pid")
        spawned = process_start_monotonic(int(pid)) if isinstance(pid, int) else None
        if added is not None:
            out["kubectl"] = added.t - t0
            if spawned is not None:
                out["pickup"] = spawned - added.t
                out["spawn_to_ready"] = s_ready.t - spawned
        self.b.api.delete(self.ns, name)
        self.w.wait(name, deleted, 60, since=t0)
        return out

    def raw(self, _i: int) -> dict[str, float]:
        port = free_port()
        t0 = time.monotonic()
        proc = self.b.reaper.spawn(
            daemon_argv(str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            t = poll_http_200(port, READY_TIMEOUT)
        finally:
            self.b.reaper.stop_proc(proc)
        if t is None:
            raise RuntimeError("raw daemon never answered 200")
        return {"total": t - t0}

    def local(self, _i: int) -> dict[str, float]:
        argv = [
            *steward_cli(),
            "--state-dir",
            str(self.local_state),
            "local",
            str(self.local_file),
            "--until-ready",
            "--timeout",
            str(READY_TIMEOUT),
        ]
        t0 = time.monotonic()
        proc = self.b.reaper.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_header = t_ready = None
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for raw_line in proc.stdout:
                t = time.monotonic()
                line = raw_line.decode(errors="replace").rstrip()
                lines.append(line)
                fields = line.split()
                if t_header is None and fields[:2] == ["NAME", "TYPE"]:
                    t_header = t
                if fields and fields[-1] == "Ready" and "active" in fields:
                    t_ready = t
                    break
            threading.Thread(target=proc.communicate, daemon=True).start()
            proc.wait(timeout=60)
        finally:
            self.b.reaper.stop_proc(proc)
        if t_ready is None:
            raise RuntimeError("steward local never printed Ready:\n" + "\n".join(lines[-10:]))
        out = {"total": t_ready - t0}
        if t_header is not None:
            out["startup"] = t_header - t0
            out["after_startup"] = t_ready - t_header
        return out

    def library(self, _i: int) -> dict[str, float]:
        from steward.engine.service import Service

        manifest = msvc("web-library", spec())
        t0 = time.monotonic()
        svc = Service.from_manifest(manifest, state_dir=self.lib_state)
        ok = svc.start(timeout=READY_TIMEOUT)
        t = time.monotonic()
        svc.stop(timeout=10)
        if not ok:
            raise RuntimeError(f"Service.start() failed: {svc.status.last_error}")
        return {"total": t - t0}

    def seed(self, _i: int) -> dict[str, float]:
        port = free_port()
        t0 = time.monotonic()
        proc = self.b.reaper.spawn(
            [sys.executable, "-c", SEED_ENTRY, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:  # poll_service_status: check, then sleep(1), until the timeout
                try:
                    if requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() - t0 > READY_TIMEOUT:
                    raise RuntimeError("seed-style daemon never answered")
                time.sleep(1)
            return {"total": time.monotonic() - t0}
        finally:
            self.b.reaper.stop_proc(proc)

    # -- the run -----------------------------------------------------------
    def run(self) -> ScenarioResult:
        quick = self.b.quick
        rounds, warmup = (6, 1) if quick else (30, 2)
        op, self.w, op_startup = self.b.operator("p1")
        self.ns = op.namespace
        rng = random.Random(1)
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        failures: dict[str, int] = dict.fromkeys(MODES, 0)
        t_start = time.monotonic()
        try:
            for r in range(warmup + rounds):
                order = list(MODES)
                rng.shuffle(order)
                for mode in order:
                    try:
                        out = getattr(self, mode)(r)
                    except Exception as exc:
                        failures[mode] += 1
                        print(f"[p1] {mode} round {r}: {exc}", file=sys.stderr)
                        continue
                    if r >= warmup:
                        samples[mode].append(out)
                if r >= warmup:
                    done = r - warmup + 1
                    p = {m: percentile([s["total"] for s in samples[m]], 50) for m in MODES}
                    print(
                        f"[p1] round {done}/{rounds}: p50 "
                        + " ".join(f"{m}={fmt(v)}" for m, v in p.items()),
                        file=sys.stderr,
                    )
        finally:
            op.close()
        return self.result(samples, failures, op_startup, time.monotonic() - t_start)

    def result(
        self,
        samples: dict[str, list[dict[str, float]]],
        failures: dict[str, int],
        op_startup: float,
        seconds: float,
    ) -> ScenarioResult:
        totals = {m: [s["total"] for s in samples[m]] for m in MODES}
        stats = {m: summarize(v) for m, v in totals.items()}
        parts: dict[str, dict[str, Any]] = {}
        for key in ("kubectl", "pickup", "spawn_to_ready"):
            parts[key] = summarize([s[key] for s in samples["operator"] if key in s])
        for key in ("startup", "after_startup"):
            parts[f"local_{key}"] = summarize([s[key] for s in samples["local"] if key in s])
        raw = stats["raw"]
        overhead = {
            m: {"p50": diff(stats[m]["p50"], raw["p50"]), "p95": diff(stats[m]["p95"], raw["p95"])}
            for m in MODES
            if m != "raw"
        }
        n = min(len(totals["operator"]), len(totals["raw"]))
        paired = summarize([totals["operator"][i] - totals["raw"][i] for i in range(n)])
        steward_share = [s["total"] - s["kubectl"] for s in samples["operator"] if "kubectl" in s]
        share = summarize(steward_share)
        share_overhead = {
            "p50": diff(share["p50"], raw["p50"]),
            "p95": diff(share["p95"], raw["p95"]),
        }
        data = {
            "rounds": len(totals["raw"]),
            "failures": failures,
            "operator_startup_s": round(op_startup, 3),
            "totals": {m: [round(x, 4) for x in v] for m, v in totals.items()},
            "stats": stats,
            "operator_breakdown": parts,
            "overhead_vs_raw": overhead,
            "operator_minus_raw_paired": paired,
            "operator_after_kubectl": share,
            "operator_after_kubectl_overhead": share_overhead,
        }

        def show(m: str) -> str:
            return f"p50 {fmt(stats[m]['p50'])} / p95 {fmt(stats[m]['p95'])}"

        raw_txt = show("raw")
        targets = [
            Target(
                "operator overhead p50, without kubectl's own time",
                share_overhead["p50"],
                0.03,
                steward=f"p50 {fmt(share['p50'])}",
                baseline=f"p50 {fmt(raw['p50'])}",
                note="apply -> Ready minus (apply -> ADDED seen by a watch), minus raw",
            ),
            Target(
                "operator overhead p95, without kubectl's own time",
                share_overhead["p95"],
                0.08,
                steward=f"p95 {fmt(share['p95'])}",
                baseline=f"p95 {fmt(raw['p95'])}",
            ),
            Target(
                "  same, with kubectl (p50 / p95)",
                overhead["operator"]["p50"],
                None,
                steward=show("operator"),
                baseline=raw_txt,
                note=f"p95 overhead {fmt(overhead['operator']['p95'])}",
            ),
            Target(
                "library Service.start() overhead p50/p95",
                overhead["library"]["p50"],
                None,
                steward=show("library"),
                baseline=raw_txt,
                note=f"p95 overhead {fmt(overhead['library']['p95'])}",
            ),
            Target(
                "local --until-ready overhead p50 (incl. interpreter)",
                overhead["local"]["p50"],
                None,
                steward=show("local"),
                baseline=raw_txt,
                note=(
                    f"start-up (interpreter + imports + manifest) p50 "
                    f"{fmt(parts['local_startup']['p50'])}; after start-up p50 "
                    f"{fmt(parts['local_after_startup']['p50'])}"
                ),
            ),
            Target(
                "seed reference (fresh interpreter + 1 s poll)",
                overhead["seed"]["p50"],
                None,
                steward=show("seed"),
                baseline=raw_txt,
            ),
        ]
        res = ScenarioResult(KEY, TITLE, data, targets, seconds)
        self.plot(totals, parts, stats)
        return res

    def plot(
        self,
        totals: dict[str, list[float]],
        parts: dict[str, dict[str, Any]],
        stats: dict[str, Any],
    ) -> None:
        fig, axes = plots.figure(1, 2)
        ax = axes[0][0]
        ax.boxplot([totals[m] or [0.0] for m in MODES], showfliers=True)
        ax.set_xticks(
            range(1, len(MODES) + 1), [m if m != "seed" else "seed\n(ref.)" for m in MODES]
        )
        ax.set_ylabel("seconds until Ready / first 200")
        ax.set_title("start -> Ready, per way of starting")
        ax.grid(axis="y", alpha=0.3)
        ax = axes[0][1]
        labels = ["kubectl", "pickup", "spawn_to_ready"]
        left = 0.0
        for label in labels:
            v = parts[label]["p50"] or 0.0
            ax.barh(["operator (p50 parts)"], [v], left=left, label=label)
            left += v
        ax.barh(["raw (p50)"], [stats["raw"]["p50"] or 0.0], color="grey", label="raw")
        ax.set_xlabel("seconds")
        ax.set_title("where the operator's time goes")
        ax.legend(loc="lower right", fontsize=8)
        plots.save(fig, results_dir(self.b.quick) / f"{KEY}.png", TITLE)


def run(bench: Bench) -> ScenarioResult:
    return P1(bench).run()
