"""The peers' statistics, targets and side-by-side table (and its README block)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from bench.harness.report import README, ScenarioResult, Target, fmt, machine, now_iso, results_dir
from bench.harness.timing import ratio, summarize

START_MODES = ("supervisorctl", "xmlrpc", "pm2", "local", "library", "raw")
CRASH_MODES = ("supervisord", "pm2", "local", "library")
FLEET_MODES = ("supervisord", "pm2", "local", "local_noprobe")
BEGIN, END = "<!-- bench:peers:begin -->", "<!-- bench:peers:end -->"
KEY = "peers"
TITLE = "Peers: supervisord and pm2 beside Steward"


def operator_numbers(quick: bool) -> dict[str, Any]:
    """The operator's start (P1) and crash detection (P4) from their result files."""
    out: dict[str, Any] = {}
    d = results_dir(quick)
    for key, path in (("p1", d / "p1.json"), ("p4", d / "p4.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if key == "p1":
            out["start"] = {**r["data"]["stats"]["operator"], "date": r.get("date")}
        else:
            out["crash"] = {**r["data"]["crash_period10"], "date": r.get("date")}
    return out


def _stat(samples: list[dict[str, float]], key: str) -> dict[str, Any]:
    return summarize([s[key] for s in samples if key in s])


def _p(stats: dict[str, Any], q: str = "p95") -> float | None:
    v = stats.get(q)
    return None if v is None else float(v)


def _faster(*values: float | None) -> float | None:
    xs = [v for v in values if v is not None]
    return min(xs) if xs else None


def _both(s: dict[str, Any]) -> str:
    return f"p50 {fmt(s.get('p50'))} / p95 {fmt(s.get('p95'))}"


def stats_of(data: dict[str, Any]) -> dict[str, Any]:
    st, cr = data["start"], data["crash"]
    start = {m: _stat(st[m], "total") for m in START_MODES}
    start["local_after_startup"] = _stat(st["local"], "after_startup")
    start["local_startup"] = _stat(st["local"], "startup")
    start["supervisorctl_returned"] = _stat(st["supervisorctl"], "returned")
    start["pm2_returned"] = _stat(st["pm2"], "returned")
    crash = {m: _stat(v, "noticed") for m, v in cr.items()}
    again = {m: _stat(v, "answering") for m, v in cr.items()}
    crash["pm2_reacted"] = _stat(cr["pm2"], "reacted")
    return {"start": start, "crash_noticed": crash, "crash_answering": again}


def _fleet(data: dict[str, Any], mode: str, n: int, key: str) -> float | None:
    v = data["fleet"].get(mode, {}).get(str(n), {}).get(key)
    return None if v is None else float(v)


def result(data: dict[str, Any], idle_n: int, seconds: float) -> ScenarioResult:
    s = stats_of(data)
    data["stats"] = s
    start, crash, again = s["start"], s["crash_noticed"], s["crash_answering"]
    t: list[Target] = []
    peer_start = _faster(_p(start["xmlrpc"], "p50"), _p(start["pm2"], "p50"))
    peers_start_txt = (
        f"supervisord XML-RPC {fmt(_p(start['xmlrpc'], 'p50'))}, pm2 {fmt(_p(start['pm2'], 'p50'))}"
    )
    t.append(
        Target(
            "start -> first 200, library (p50)",
            _p(start["library"], "p50"),
            peer_start,
            steward=_both(start["library"]),
            baseline=peers_start_txt,
        )
    )
    t.append(
        Target(
            "start -> first 200, local after start-up (p50)",
            _p(start["local_after_startup"], "p50"),
            peer_start,
            steward=f"{_both(start['local_after_startup'])}; start-up p50 "
            f"{fmt(_p(start['local_startup'], 'p50'))}",
            baseline=peers_start_txt,
        )
    )
    peer_crash = _faster(_p(crash["supervisord"]), _p(crash["pm2"]))
    peers_crash_txt = (
        f"supervisord p95 {fmt(_p(crash['supervisord']))}, pm2 jlist p95 {fmt(_p(crash['pm2']))}"
    )
    for mode in ("local", "library"):
        t.append(
            Target(
                f"crash noticed, {mode} (p95)",
                _p(crash[mode]),
                peer_crash,
                steward=_both(crash[mode]),
                baseline=peers_crash_txt,
            )
        )
    op = data.get("operator", {}).get("crash")
    if op:
        t.append(
            Target(
                "crash noticed, operator (p95, from P4 period 10 s)",
                op.get("p95"),
                peer_crash,
                steward=_both(op),
                baseline=peers_crash_txt,
                note=f"P4 result of {op.get('date')}",
            )
        )
    peer_again = _faster(_p(again["supervisord"]), _p(again["pm2"]))
    peers_again_txt = (
        f"supervisord p95 {fmt(_p(again['supervisord']))}, pm2 p95 {fmt(_p(again['pm2']))}"
    )
    for mode in ("local", "library"):
        t.append(
            Target(
                f"crash -> 200 again, {mode}, back-off 0 (p95)",
                _p(again[mode]),
                None if peer_again is None else round(1.5 * peer_again, 4),
                steward=_both(again[mode]),
                baseline=peers_again_txt,
            )
        )
        d = again.get(f"{mode}_default_backoff", {})
        t.append(
            Target(
                f"  same, default back-off 10 s, {mode} (p50)",
                _p(d, "p50"),
                None,
                steward=_both(d),
                baseline=peers_again_txt,
            )
        )
    n = 1000 if any(str(1000) in v for v in data["fleet"].values()) else idle_n
    up = {m: _fleet(data, m, n, "all_up_seconds") for m in FLEET_MODES}
    rss = {m: _fleet(data, m, n, "rss_peak_mb") for m in FLEET_MODES}
    t.append(
        Target(
            f"N={n} all up, local (probes on)",
            up["local"],
            _faster(up["supervisord"], up["pm2"]),
            steward=f"{fmt(up['local'])} (probes off {fmt(up['local_noprobe'])})",
            baseline=f"supervisord {fmt(up['supervisord'])}, pm2 {fmt(up['pm2'])}",
            note="must beat both peers",
        )
    )
    sup_rss = rss["supervisord"]
    t.append(
        Target(
            f"N={n} peak RSS, local (probes on)",
            rss["local"],
            None if sup_rss is None else 2 * sup_rss,
            unit="MB",
            steward=f"{fmt(rss['local'], 'MB')} (probes off {fmt(rss['local_noprobe'], 'MB')})",
            baseline=f"supervisord {fmt(sup_rss, 'MB')}, pm2 daemon {fmt(rss['pm2'], 'MB')}",
        )
    )
    idle = {m: _fleet(data, m, idle_n, "idle_cpu_pct") for m in FLEET_MODES}
    t.append(
        Target(
            f"N={idle_n} idle CPU, local probes off",
            idle["local_noprobe"],
            None if idle["supervisord"] is None else 2 * idle["supervisord"],
            unit="%",
            steward=f"{fmt(idle['local_noprobe'], '%')} (probes on {fmt(idle['local'], '%')})",
            baseline=f"supervisord {fmt(idle['supervisord'], '%')}, pm2 {fmt(idle['pm2'], '%')}",
        )
    )
    cnf = data["not_found"]
    loc = cnf.get("local", {})
    t.append(
        Target(
            "command not found: failed checks (hot loop, no back-off, no reason)",
            float(_not_found_failures(loc)) if loc else None,
            0,
            unit="",
            steward=_cnf_txt(loc),
            baseline=f"supervisord {_cnf_txt(cnf.get('supervisord', {}))}; "
            f"pm2 {_cnf_txt(cnf.get('pm2', {}))}",
        )
    )
    return ScenarioResult(KEY, TITLE, data, t, seconds)


def _not_found_failures(v: dict[str, Any]) -> int:
    a, iv = v.get("attempts", []), v.get("intervals", [])
    window = float(v.get("window_s") or 60)
    failed = 0
    failed += not a or len(a) > window / 1.0  # no attempt at all, or more than one a second
    failed += any(x < 1.0 for x in iv)  # a hot loop
    failed += any(y < x for x, y in itertools.pairwise(iv))  # back-off shrinking
    failed += "not found" not in str(v.get("final_reason", "")).lower()
    return int(failed)


def _cnf_txt(v: dict[str, Any]) -> str:
    if not v:
        return "-"
    iv = ", ".join(f"{x:g}" for x in v.get("intervals", [])) or "-"
    reason = str(v.get("final_reason", "")).split(";")[0]
    return (
        f"{len(v.get('attempts', []))} attempts, intervals {iv} s, "
        f"{v.get('final_state')} ({reason[:90]})"
    )


def side_by_side(data: dict[str, Any]) -> list[list[str]]:
    """Rows of the README's peers table: supervisord, pm2, local, library, Steward / faster."""
    s = data["stats"]
    start, crash, again = s["start"], s["crash_noticed"], s["crash_answering"]

    def r(x: float | None, y: float | None) -> str:
        v = ratio(x, y)
        return "-" if v is None else f"{v:.2f}x"

    rows = []
    ps = _faster(_p(start["xmlrpc"], "p50"), _p(start["pm2"], "p50"))
    rows.append(
        [
            "start -> first 200 (p50)",
            f"{fmt(_p(start['xmlrpc'], 'p50'))} XML-RPC; "
            f"{fmt(_p(start['supervisorctl'], 'p50'))} supervisorctl (returns "
            f"{fmt(_p(start['supervisorctl_returned'], 'p50'))})",
            f"{fmt(_p(start['pm2'], 'p50'))} (CLI returns {fmt(_p(start['pm2_returned'], 'p50'))})",
            f"{fmt(_p(start['local_after_startup'], 'p50'))} after start-up "
            f"(+{fmt(_p(start['local_startup'], 'p50'))} start-up)",
            fmt(_p(start["library"], "p50")),
            f"local {r(_p(start['local_after_startup'], 'p50'), ps)}, "
            f"library {r(_p(start['library'], 'p50'), ps)}",
        ]
    )
    pc = _faster(_p(crash["supervisord"]), _p(crash["pm2"]))
    rows.append(
        [
            "SIGKILL -> status shows it (p95)",
            fmt(_p(crash["supervisord"])),
            f"{fmt(_p(crash['pm2']))} jlist (pm2 restarted it after "
            f"{fmt(_p(crash['pm2_reacted']))})",
            fmt(_p(crash["local"])),
            fmt(_p(crash["library"])),
            f"local {r(_p(crash['local']), pc)}, library {r(_p(crash['library']), pc)}",
        ]
    )
    pa = _faster(_p(again["supervisord"]), _p(again["pm2"]))
    rows.append(
        [
            "SIGKILL -> 200 again, back-off 0 (p95)",
            fmt(_p(again["supervisord"])),
            fmt(_p(again["pm2"])),
            fmt(_p(again["local"])),
            fmt(_p(again["library"])),
            f"local {r(_p(again['local']), pa)}, library {r(_p(again['library']), pa)}",
        ]
    )
    rows.append(
        [
            "SIGKILL -> 200 again, Steward's default back-off 10 s (p50)",
            "(restarts at once)",
            "(restarts at once)",
            fmt(_p(again.get("local_default_backoff", {}), "p50")),
            fmt(_p(again.get("library_default_backoff", {}), "p50")),
            "",
        ]
    )
    sizes = sorted({int(k) for v in data["fleet"].values() for k in v})
    for n in sizes:
        for key, label, unit in (
            ("all_up_seconds", "all up", "s"),
            ("rss_peak_mb", "peak RSS", "MB"),
            ("cpu_seconds_to_all_up", "CPU s to all up", "s"),
            ("idle_cpu_pct", "idle CPU", "%"),
            ("stop_seconds", "stop, all gone", "s"),
        ):
            vals = {m: _fleet(data, m, n, key) for m in FLEET_MODES}
            if all(v is None for v in vals.values()):
                continue
            if key == "all_up_seconds":
                errs = {
                    m: data["fleet"].get(m, {}).get(str(n), {}).get("error") for m in FLEET_MODES
                }
                cell = {
                    m: fmt(v, unit) if v is not None else ("failed" if errs[m] else "-")
                    for m, v in vals.items()
                }
            else:
                cell = {m: fmt(v, unit) for m, v in vals.items()}
            if key == "stop_seconds":
                for m in FLEET_MODES:
                    if data["fleet"].get(m, {}).get(str(n), {}).get("stop_sigkilled_after_grace"):
                        cell[m] += " SIGKILLed"
            base = vals["supervisord"]
            rows.append(
                [
                    f"N={n:,} {label}",
                    cell["supervisord"],
                    cell["pm2"]
                    + (
                        " (daemon)"
                        if key in ("rss_peak_mb", "cpu_seconds_to_all_up", "idle_cpu_pct")
                        else ""
                    ),
                    f"{cell['local']} (probes off {cell['local_noprobe']})",
                    "",
                    f"vs supervisord: {r(vals['local'], base)} "
                    f"(probes off {r(vals['local_noprobe'], base)})",
                ]
            )
    op = data.get("operator", {})
    if op:
        o_start, o_crash = op.get("start", {}), op.get("crash", {})
        rows.append(
            [
                "operator (P1 apply -> Ready p50 incl. kubectl; P4 crash p95, period 10 s)",
                "",
                "",
                f"start {fmt(_p(o_start, 'p50'))}, crash noticed {fmt(_p(o_crash))}",
                "",
                f"crash {r(_p(o_crash), pc)}",
            ]
        )
    cnf = data["not_found"]
    rows.append(
        [
            "command not found",
            _cnf_txt(cnf.get("supervisord", {})),
            _cnf_txt(cnf.get("pm2", {})),
            _cnf_txt(cnf.get("local", {})),
            "(same engine as local)",
            "",
        ]
    )
    return rows


PEER_HEADER = ["measure", "supervisord", "pm2", "steward local", "library", "Steward / faster peer"]


def _sizes(data: dict[str, Any]) -> list[str]:
    return [f"{n:,}" for n in sorted({int(k) for v in data["fleet"].values() for k in v})]


def render_peers(res: ScenarioResult, date: str, machine: dict[str, Any]) -> str:
    data = res.data
    v = data.get("versions", {})
    lines = [
        BEGIN,
        f"Last run: {date} ({'quick' if data.get('quick') else 'full'}, "
        f"{data.get('rounds')} rounds, N = {', '.join(_sizes(data))}); supervisor "
        f"{v.get('supervisor')}, pm2 {v.get('pm2')} on Node {v.get('node')}; "
        f"{machine.get('nproc')} cores, load average at start "
        f"{', '.join(map(str, machine.get('load_avg_at_start', [])))}.",
        "",
        "| " + " | ".join(PEER_HEADER) + " |",
        "|" + "---|" * len(PEER_HEADER),
    ]
    lines += [
        "| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in side_by_side(data)
    ]
    lines += ["", "| target | Steward | peers | limit | verdict |", "|---|---|---|---|---|"]
    for t in res.targets:
        limit = "" if t.limit is None else f"≤ {fmt(t.limit, t.unit) if t.unit else t.limit}"
        lines.append(f"| {t.name} | {t.steward} | {t.baseline} | {limit} | {t.verdict} |")
    lines.append(END)
    return "\n".join(lines)


def update_readme(res: ScenarioResult, quick: bool = False) -> None:
    """Rewrite the peers block of bench/README.md."""

    res.data["quick"] = quick
    block = render_peers(res, now_iso(), machine())
    text = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n"
    )
    README.write_text(text)
