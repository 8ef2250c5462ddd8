"""Results: targets (met / missed by how much), JSON files, the summary table, bench/README.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("STEWARD_BENCH_RESULTS") or BENCH / "results")
"""``STEWARD_BENCH_RESULTS``: results elsewhere (a test's own directory), README left alone."""
REDIRECTED = bool(os.environ.get("STEWARD_BENCH_RESULTS"))
README = BENCH / "README.md"
TABLE_BEGIN = "<!-- bench:results:begin -->"
TABLE_END = "<!-- bench:results:end -->"


@dataclass
class Target:
    """One goal: ``value`` must be at most ``limit`` (``unit`` for display)."""

    name: str
    value: float | None
    limit: float | None
    """None: a reference line, shown without a verdict."""
    unit: str = "s"
    steward: str = ""
    """What Steward measured (display)."""
    baseline: str = ""
    """What the raw work measured (display)."""
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.limit is None:
            return None
        return self.value <= self.limit

    @property
    def verdict(self) -> str:
        if self.limit is None:
            if self.value is None:
                return "(reference)"
            sign = "+" if self.value >= 0 else "-"
            return f"(reference) {sign}{_fmt(abs(self.value), self.unit)}"
        if self.value is None:
            return "not measured"
        delta = self.value - self.limit
        unit = "pp" if self.unit == "%" else self.unit  # a difference of percentages
        if delta == 0:
            return "met"
        if delta < 0:
            return f"met ({_fmt(-delta, unit)} to spare)"
        return f"MISSED by {_fmt(delta, unit)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "verdict": self.verdict}


def _fmt(x: float, unit: str) -> str:
    if unit == "s":
        return f"{x:.3f} s" if abs(x) < 10 else f"{x:.1f} s"
    if unit == "%":
        return f"{x:.1f} %"
    if unit == "pp":
        return f"{x:.1f} pp"
    if unit == "MB":
        return f"{x:.1f} MB"
    if unit == "x":
        return f"{x:.3f}x"
    return f"{x:g} {unit}".strip()


def fmt(x: float | None, unit: str = "s") -> str:
    return "-" if x is None else _fmt(x, unit)


@dataclass
class ScenarioResult:
    key: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.key,
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "targets": [t.to_dict() for t in self.targets],
            "data": self.data,
        }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return r.stdout.strip()
    except OSError:
        return ""


def results_dir(quick: bool) -> Path:
    d = RESULTS / "quick" if quick else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_result(result: ScenarioResult, quick: bool, meta: dict[str, Any]) -> Path:
    path = results_dir(quick) / f"{result.key}.json"
    payload = {**result.to_dict(), "mode": "quick" if quick else "full", **meta}
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    return path


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([r["scenario"], "(failed)", "", "", "", str(r["error"])[:80]])
        for t in r.get("targets", []):
            limit = "" if t["limit"] is None else f"≤ {_fmt(t['limit'], t['unit'])}"
            rows.append(
                [r["scenario"], t["name"], t["steward"], t["baseline"], limit, t["verdict"]]
            )
    return rows


HEADER = ["scenario", "measure", "Steward", "raw baseline", "target", "verdict"]


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(HEADER, *rows, strict=False)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(out)


def update_readme(meta: dict[str, Any], durations: dict[str, float]) -> None:
    """Rewrite the results block of bench/README.md from every full-run result file."""
    results = []
    for path in [*sorted(RESULTS.glob("p*.json")), *RESULTS.glob("soak.json")]:
        results.append(json.loads(path.read_text()))
    m = meta["machine"]
    dates = sorted({r.get("date", "") for r in results})
    lines = [
        TABLE_BEGIN,
        "The latest full-run result of each scenario (`--only` runs update theirs); newest "
        f"{dates[-1] if dates else '-'} (git {m.get('git_commit') or '?'}); "
        f"machine: {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}; load average at start "
        f"{', '.join(map(str, m['load_avg_at_start']))} (shared machine: other test runs).",
        "",
        render_markdown(table_rows(results)),
        "",
        "Scenario durations (s) and when each ran: "
        + ", ".join(
            f"{r['scenario']} {r.get('seconds', 0):.0f} "
            f"({str(r.get('date', '?'))[:10]}, git {(r.get('machine') or {}).get('git_commit', '?')})"
            for r in results
        )
        + (f"; the last run took {durations['total']:.0f} s" if "total" in durations else ""),
        TABLE_END,
    ]
    block = "\n".join(lines)
    text = (
        README.read_text() if README.exists() else f"# Benchmarks\n\n{TABLE_BEGIN}\n{TABLE_END}\n"
    )
    pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block
    README.write_text(text)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
