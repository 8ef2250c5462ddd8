"""Run the benchmarks: ``python -m bench.run [--quick] [--only P1,P3]``.

Starts a real control plane (and the Docker engine when P6 runs), runs each
scenario against a fresh ``steward run`` process, writes
``bench/results[/quick]/<scenario>.json`` and ``.png``, prints a summary
table, and (full runs) rewrites the results block of ``bench/README.md``.
Everything started is stopped at the end, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import report
from bench.harness.audit import AuditLog
from bench.harness.cleanup import Reaper, log, sweep_stale
from bench.harness.cluster import Api, Kubectl, install_crd, start_control_plane
from bench.harness.context import Bench
from bench.harness.report import ScenarioResult
from bench.scenarios import OPT_IN, SCENARIOS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer runs, smaller N (about 3 min)")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios ({','.join(k.upper() for k in SCENARIOS)}; "
        f"{','.join(k.upper() for k in sorted(OPT_IN))} only when named)",
    )
    p.add_argument("--keep-work-dir", action="store_true", help="keep logs and state dirs")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="sample every operator with py-spy (collapsed stacks in DIR; numbers get noisier)",
    )
    return p.parse_args(argv)


def selected(only: str) -> list[str]:
    if not only:
        return [k for k in SCENARIOS if k not in OPT_IN]
    keys = [k.strip().lower() for k in only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    return [k for k in SCENARIOS if k in keys]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = selected(args.only)
    t_begin = time.monotonic()
    sweep_stale()
    reaper = Reaper()
    reaper.install()
    work_dir = Path(tempfile.mkdtemp(prefix=f"steward-bench-{reaper.short}-"))
    meta: dict[str, Any] = {
        "machine": report.machine(),
        "date": report.now_iso(),
        "run_id": reaper.run_id,
    }
    results: list[ScenarioResult] = []
    try:
        log(f"run {reaper.run_id}; work dir {work_dir}; scenarios {', '.join(keys)}")
        audit = AuditLog(work_dir / "audit")
        info = start_control_plane(reaper, audit)
        api = Api(info)
        kubectl = Kubectl(info, reaper)
        install_crd(kubectl)
        bench = Bench(reaper, info, api, kubectl, work_dir, args.quick, keys, audit=audit)
        if args.profile:
            bench.profile_dir = Path(args.profile).resolve()
        for key in keys:
            results.append(run_one(key, SCENARIOS[key], bench, meta))
        for fleet_key in list(bench.shared):
            closer = bench.shared.pop(fleet_key)
            closer.close()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        reaper.close()
        if not args.keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            log(f"work dir kept: {work_dir}")
    total = time.monotonic() - t_begin
    rows = report.table_rows([r.to_dict() for r in results])
    print()
    print(report.render_text(rows))
    print(f"\nwhole run: {total:.0f} s ({'quick' if args.quick else 'full'})")
    if not args.quick and not report.REDIRECTED:
        report.update_readme(meta, {"total": total})
    summary_plot(results, args.quick)
    return 1 if any(r.error for r in results) else 0


def run_one(
    key: str, fn: Callable[[Bench], ScenarioResult], bench: Bench, meta: dict[str, Any]
) -> ScenarioResult:
    log(f"=== {key.upper()} ===")
    t0 = time.monotonic()
    try:
        result = fn(bench)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        traceback.print_exc()
        result = ScenarioResult(key, key.upper(), error=f"{type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - t0
    path = report.write_result(result, bench.quick, meta)
    log(f"{key.upper()} done in {result.seconds:.0f} s -> {path}")
    for t in result.targets:
        log(f"  {t.name}: {t.steward} vs {t.baseline} -> {t.verdict}")
    return result


def summary_plot(results: list[ScenarioResult], quick: bool) -> None:
    """value / limit per target: below 1 is met. Every scenario's latest result file of
    this mode, like the README block, so an ``--only`` run does not drop the others."""
    import json

    from bench.harness import plots

    latest = {r.key: r.to_dict() for r in results}
    for path in sorted(report.results_dir(quick).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        latest.setdefault(str(data.get("scenario", path.stem)), data)
    bars = [
        (f"{key.upper()} {t['name'].strip()}", t["value"] / t["limit"], bool(t.get("met")))
        for key, r in sorted(latest.items())
        for t in r.get("targets", [])
        if t.get("limit") and t.get("value") is not None
    ]
    if not bars:
        return
    fig, axes = plots.figure(1, 1, size=(10, 0.45 * len(bars) + 1.5))
    ax = axes[0][0]
    names = [b[0] for b in bars][::-1]
    values = [max(b[1], 0.0) for b in bars][::-1]
    colors = ["tab:green" if b[2] else "tab:red" for b in bars][::-1]
    ax.barh(names, values, color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("measured / target (≤ 1 is met)")
    plots.save(fig, report.results_dir(quick) / "summary.png", "Steward benchmark targets")


if __name__ == "__main__":
    sys.exit(main())
