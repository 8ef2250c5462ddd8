"""P5 Terraform: the operator's apply next to the same module applied with the CLI by hand.

Same binary (``binaryPath`` = the ``terraform`` on PATH), same module (three
``terraform_data`` resources, a ``local-exec``, an output that becomes the
endpoint), same Terraform environment (TF_IN_AUTOMATION, TF_INPUT=0,
CHECKPOINT_DISABLE). Per round, in alternating order:

* operator — ``kubectl apply`` until Ready (init + apply + output inside);
  then a variable changes (module unchanged): the re-apply until Ready with the
  new endpoint, and ``status.runtime.initCount`` before and after (must not grow);
* raw — ``terraform init``, ``apply -auto-approve``, ``output -json`` in a
  fresh directory; then the changed variable: ``apply`` + ``output -json``.

Targets: Steward's added time (operator minus raw, paired by round; the first
apply counted from the watch's ADDED event, i.e. without kubectl) at most
ADDED_TARGET per apply, and no re-init. The operator's own CPU-seconds per
apply are reported beside: on a loaded machine the wall-clock difference is
mostly the load, the CPU is what the difference would be on an idle one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from bench.harness import plots
from bench.harness.cleanup import log
from bench.harness.cluster import msvc
from bench.harness.context import Bench
from bench.harness.report import ScenarioResult, Target, fmt, results_dir
from bench.harness.timing import diff, percentile, ratio, summarize
from bench.harness.watch import deleted, ready

KEY = "p5"
TITLE = "P5 Terraform: operator apply vs terraform CLI"
MODULE = """
variable "name" { type = string }

resource "terraform_data" "a" { input = var.name }
resource "terraform_data" "b" { input = "${var.name}-b" }
resource "terraform_data" "c" {
  input = terraform_data.a.output
  provisioner "local-exec" { command = "true" }
}

output "url" { value = "http://127.0.0.1:9/${var.name}" }
"""
TF_ENV = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
ADDED_TARGET = 0.05
"""Seconds Steward may add to the CLI's own time, per apply (without kubectl)."""
ROUNDS_ENV = "STEWARD_BENCH_P5_ROUNDS"
"""More rounds on a busy machine: the added time is a small difference of noisy totals."""


def terraform_binary() -> str:
    for name in ("terraform", "tofu"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no terraform or tofu on PATH: P5 compares the operator with the CLI")


def spec(binary: str, name: str) -> dict[str, Any]:
    return {
        "terraform": {
            "module": {"inline": {"main.tf": MODULE}},
            "vars": {"name": name},
            "endpointOutput": "url",
            "binaryPath": binary,
            "driftDetection": {"enabled": False},
        }
    }


class P5:
    def __init__(self, bench: Bench, binary: str) -> None:
        self.b = bench
        self.binary = binary
        self.dir = bench.work_dir / "p5"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _tf(self, cwd: Path, *args: str) -> None:
        r = subprocess.run(
            [self.binary, *args],
            cwd=cwd,
            env=self.b.reaper.env({**self.b.reaper.env(), **TF_ENV}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"terraform {args[0]} failed: {r.stderr.strip()[-500:]}")

    def raw(self, i: int) -> dict[str, float]:
        d = self.dir / f"raw-{i}"
        d.mkdir()
        (d / "main.tf").write_text(MODULE)
        (d / "terraform.tfvars.json").write_text(json.dumps({"name": f"raw-{i}"}))
        try:
            t0 = time.monotonic()
            self._tf(d, "init", "-input=false", "-no-color")
            t_init = time.monotonic()
            self._tf(d, "apply", "-auto-approve", "-input=false", "-no-color")
            self._tf(d, "output", "-json", "-no-color")
            t1 = time.monotonic()
            (d / "terraform.tfvars.json").write_text(json.dumps({"name": f"raw-{i}-v2"}))
            t2 = time.monotonic()
            self._tf(d, "apply", "-auto-approve", "-input=false", "-no-color")
            self._tf(d, "output", "-json", "-no-color")
            t3 = time.monotonic()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return {"first": t1 - t0, "init": t_init - t0, "second": t3 - t2}

    def operator(self, i: int) -> dict[str, float]:
        name = f"infra-{i}"
        ns, w = self.ns, self.w
        cpu0 = self.op.cpu_seconds()
        t0 = time.monotonic()
        self.b.kubectl(
            "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(msvc(name, spec(self.binary, name)))
        )
        s1 = w.wait(name, ready, 300, since=t0)
        t1 = s1.t
        added = w.first(name, lambda s: s.type == "ADDED", since=t0)
        cpu1 = self.op.cpu_seconds()
        inits_before = s1.runtime.get("initCount")
        patch = {"spec": {"terraform": {"vars": {"name": f"{name}-v2"}}}}
        t2 = time.monotonic()
        self.b.api.merge_patch(ns, name, patch)
        s2 = w.wait(
            name,
            lambda s: s.is_ready and s.observed_generation == 2 and "-v2" in (s.uri or ""),
            300,
            since=t2,
        )
        cpu2 = self.op.cpu_seconds()
        inits_after = s2.runtime.get("initCount")
        self.b.api.delete(ns, name)
        w.wait(name, deleted, 300, since=t2)
        out = {
            "first": t1 - t0,
            "second": s2.t - t2,
            "cpu_first": cpu1 - cpu0,
            "cpu_second": cpu2 - cpu1,
        }
        if added is not None:
            out["first_after_kubectl"] = t1 - added.t
        if isinstance(inits_before, int) and isinstance(inits_after, int):
            out["inits_first"] = float(inits_before)
            out["reinits_second"] = float(inits_after - inits_before)
        return out

    def run(self) -> ScenarioResult:
        rounds = int(os.environ.get(ROUNDS_ENV) or (2 if self.b.quick else 5))
        t_start = time.monotonic()
        op, w, _ = self.b.operator("p5")
        self.ns, self.w, self.op = op.namespace, w, op
        samples: dict[str, list[dict[str, float]]] = {"operator": [], "raw": []}
        try:
            # warm-up: the operator asks the binary its version once per process
            self.operator(-1)
            for i in range(rounds):
                order = ("operator", "raw") if i % 2 == 0 else ("raw", "operator")
                for mode in order:
                    samples[mode].append(getattr(self, mode)(i))
                log(
                    f"p5 round {i + 1}/{rounds}: operator {samples['operator'][-1]} "
                    f"raw {samples['raw'][-1]}"
                )
        finally:
            op.close()
        return self.result(samples, time.monotonic() - t_start, op.errors_in_log())

    def result(
        self, samples: dict[str, list[dict[str, float]]], seconds: float, errors: list[str]
    ) -> ScenarioResult:
        def col(mode: str, key: str) -> list[float]:
            return [s[key] for s in samples[mode] if key in s]

        stats = {
            f"{mode}_{key}": summarize(col(mode, key))
            for mode in ("operator", "raw")
            for key in ("first", "second")
        }
        stats["raw_init"] = summarize(col("raw", "init"))
        stats["operator_cpu_first"] = summarize(col("operator", "cpu_first"))
        stats["operator_cpu_second"] = summarize(col("operator", "cpu_second"))
        stats["operator_first_after_kubectl"] = summarize(col("operator", "first_after_kubectl"))
        r1k = ratio(stats["operator_first_after_kubectl"]["p50"], stats["raw_first"]["p50"])
        over1 = diff(stats["operator_first"]["p50"], stats["raw_first"]["p50"])
        r1 = ratio(stats["operator_first"]["p50"], stats["raw_first"]["p50"])
        r2 = ratio(stats["operator_second"]["p50"], stats["raw_second"]["p50"])
        n = min(len(samples["operator"]), len(samples["raw"]))
        paired = [samples["operator"][i]["first"] / samples["raw"][i]["first"] for i in range(n)]
        reinits = col("operator", "reinits_second")
        added_first = paired_added(samples, "first_after_kubectl", "first")
        added_second = paired_added(samples, "second", "second")
        data: dict[str, Any] = {
            "binary": self.binary,
            "samples": samples,
            "stats": stats,
            "ratio_first_p50": r1,
            "ratio_first_after_kubectl_p50": r1k,
            "overhead_first_p50_s": over1,
            "break_even_module_seconds": None if over1 is None else round(over1 / 0.10, 2),
            "ratio_second_p50": r2,
            "ratio_first_paired_p50": percentile(paired, 50),
            "added_first_without_kubectl": summarize(added_first),
            "added_second": summarize(added_second),
            "init_count_first_apply": col("operator", "inits_first"),
            "reinits_on_second_reconcile": reinits,
            "operator_errors": errors,
        }
        o1, w1 = stats["operator_first"], stats["raw_first"]
        o2, w2 = stats["operator_second"], stats["raw_second"]
        a1, a2 = data["added_first_without_kubectl"], data["added_second"]
        targets = [
            Target(
                "first apply: Steward's added time, without kubectl (p50 of pairs)",
                a1["p50"],
                ADDED_TARGET,
                steward=f"p50 {fmt(stats['operator_first_after_kubectl']['p50'])}",
                baseline=f"p50 {fmt(w1['p50'])} (init+apply+output)",
                note=f"p95 of pairs {fmt(a1['p95'])}",
            ),
            Target(
                "  same, with kubectl (p50 ratio - 1)",
                _pct(r1),
                None,
                unit="%",
                steward=f"p50 {fmt(o1['p50'])} / p95 {fmt(o1['p95'])}",
                baseline=f"p50 {fmt(w1['p50'])} / p95 {fmt(w1['p95'])}",
                note=f"without kubectl {_pct(r1k)} %",
            ),
            Target(
                "variable changed: Steward's added time (p50 of pairs)",
                a2["p50"],
                ADDED_TARGET,
                steward=f"p50 {fmt(o2['p50'])} (ratio {fmt(r2, 'x')})",
                baseline=f"p50 {fmt(w2['p50'])} (apply+output)",
                note=f"p95 of pairs {fmt(a2['p95'])}",
            ),
            Target(
                "  operator CPU per apply, first / variable changed (p50)",
                stats["operator_cpu_first"]["p50"],
                None,
                steward=(
                    f"{fmt(stats['operator_cpu_first']['p50'])} / "
                    f"{fmt(stats['operator_cpu_second']['p50'])} CPU"
                ),
                baseline="(Terraform's own CPU not counted)",
                note="the operator's own CPU-seconds: what its added time is on an idle machine",
            ),
            Target(
                "re-inits on the second reconcile",
                max(reinits) if reinits else None,
                0,
                unit="",
                steward=f"{sum(reinits):.0f} in {len(reinits)} rounds",
                baseline="0",
            ),
        ]
        self.plot(samples)
        return ScenarioResult(KEY, TITLE, data, targets, seconds)

    def plot(self, samples: dict[str, list[dict[str, float]]]) -> None:
        fig, axes = plots.figure(1, 2)
        for ax, key, title in (
            (axes[0][0], "first", "first apply (init + apply + output)"),
            (axes[0][1], "second", "second apply (variable changed)"),
        ):
            vals = [[s[key] for s in samples[m]] or [0.0] for m in ("operator", "raw")]
            ax.boxplot(vals)
            ax.set_xticks([1, 2], ["operator", "terraform CLI"])
            ax.set(title=title, ylabel="s")
        plots.save(fig, results_dir(self.b.quick) / f"{KEY}.png", TITLE)


def paired_added(
    samples: dict[str, list[dict[str, float]]], op_key: str, raw_key: str
) -> list[float]:
    """Operator minus raw, round by round (each pair ran back to back, so load drifts cancel)."""
    return [
        o[op_key] - r[raw_key]
        for o, r in zip(samples["operator"], samples["raw"], strict=False)
        if op_key in o and raw_key in r
    ]


def _pct(r: float | None) -> float | None:
    """A ratio as overhead in percent (1.25 -> 25.0)."""
    return None if r is None else round((r - 1) * 100, 1)


def run(bench: Bench) -> ScenarioResult:
    return P5(bench, terraform_binary()).run()
