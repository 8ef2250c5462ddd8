"""Many lightweight daemons at once (P2, P3): specs, concurrent creation, teardown."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.harness.cleanup import log
from bench.harness.cluster import Api, msvc
from bench.harness.context import Bench
from bench.harness.operator import Operator, metric
from bench.harness.timing import summarize
from bench.harness.watch import Sighting, Watcher, ready

CREATE_CONCURRENCY = 8
MB = 1024 * 1024


def listener_spec(
    argv: list[str],
    protocol: str = "tcp",
    period: float = 10,
    threshold: int = 3,
    health_file: str | None = None,
    backoff: float = 10,
) -> dict[str, Any]:
    """A tcp_listener daemon on $(PORT) with a TCP (or HTTP GET /) probe."""
    check: dict[str, Any] = {"tcp": {}} if protocol == "tcp" else {"http": {"path": "/"}}
    return {
        "daemon": {"command": [*argv, "$(PORT)", *([health_file] if health_file else [])]},
        "endpoint": {
            "protocol": protocol,
            "healthCheck": {
                **check,
                "periodSeconds": period,
                "failureThreshold": threshold,
                "timeoutSeconds": 1,
            },
        },
        "backoff": {"initialSeconds": backoff},
    }


def create_many(api: Api, ns: str, objs: list[dict[str, Any]]) -> tuple[float, float]:
    """POST every object with a few connections in parallel; (first start, last done)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(CREATE_CONCURRENCY, thread_name_prefix="create") as pool:
        list(pool.map(lambda o: api.create(ns, o), objs))
    return t0, time.monotonic()


@dataclass
class Fleet:
    """N Ready daemons under one operator; P2 builds it, P3 may take it over."""

    op: Operator
    watcher: Watcher
    namespace: str
    names: list[str]
    created: tuple[float, float] = (0.0, 0.0)
    ready: dict[str, Sighting] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.names)

    def close(self) -> None:
        self.watcher.stop()
        self.op.close()


def fleet_objects(prefix: str, n: int, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [msvc(f"{prefix}-{i:04d}", spec) for i in range(n)]


def request_delta(
    before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]]
) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for key in set(before) | set(after):
        d = after.get(key, 0) - before.get(key, 0)
        if d:
            out[key] = d
    return out


def operator_requests(
    before: Counter[tuple[str, str, str]],
    after: Counter[tuple[str, str, str]],
    harness_creates: int,
) -> dict[str, int]:
    """The apiserver's request counts in a window, minus the harness's own creates.

    Keys are "VERB resource[/subresource]"; "total" sums them.
    """
    delta = request_delta(before, after)
    delta[("POST", "managedservices", "")] -= harness_creates
    out = {
        f"{verb} {res}{'/' + sub if sub else ''}": n
        for (verb, res, sub), n in delta.items()
        if n and not control_planes_own(verb, res)
    }
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    out["total"] = sum(v for k, v in out.items())
    own = {
        f"{verb} {res}{'/' + sub if sub else ''}": n
        for (verb, res, sub), n in delta.items()
        if n and control_planes_own(verb, res)
    }
    if own:
        out["excluded: the control plane's own"] = sum(own.values())  # not in "total"
    return out


WATCHED_BY_STEWARD = frozenset({"managedservices", "stewardpolicies"})
"""What a single-host operator lists and watches (kopf); its other reads are GETs."""


def control_planes_own(verb: str, resource: str) -> bool:
    """A request counted by apiserver_request_total that a single-host operator never makes:
    the apiserver renews its identity Lease every 10 s (``steward run`` takes no Lease), and
    its own informers re-list and re-watch flowschemas, roles, services... when their watches
    time out. Without a per-client label in the metric, these are told apart by kind."""
    if resource == "leases":
        return True
    return verb in ("LIST", "WATCH") and resource not in WATCHED_BY_STEWARD


def curve(values: list[float], points: int = 100) -> list[float]:
    """The sorted values at ``points`` + 1 evenly spaced ranks (a CDF small enough for JSON)."""
    xs = sorted(values)
    if len(xs) <= points + 1:
        return [round(x, 3) for x in xs]
    return [round(xs[round(i * (len(xs) - 1) / points)], 3) for i in range(points + 1)]


def build(
    bench: Bench,
    suffix: str,
    n: int,
    spec: dict[str, Any],
    timeout: float,
    floor: bool = False,
) -> tuple[Fleet, dict[str, Any]]:
    """An operator (or the kopf floor), then ``n`` daemons created at once; measures the
    ramp to all Ready.

    Returns the fleet (operator still running) and the ramp's measurements.
    """
    op, watcher, startup = bench.operator(suffix, floor=floor)
    fleet = Fleet(op, watcher, op.namespace, [])
    try:
        objs = fleet_objects("d", n, spec)
        fleet.names = [o["metadata"]["name"] for o in objs]
        m0, req0, cpu0 = op.metrics(), bench.api.request_counts(), op.cpu_seconds()
        usage = op.start_sampling()

        def progress(done: int, total: int) -> None:
            log(f"{suffix}: {done}/{total} Ready after {time.monotonic() - t0:.0f} s")

        t0, t_created = create_many(bench.api, op.namespace, objs)
        fleet.created = (t0, t_created)
        fleet.ready = watcher.wait_all(fleet.names, ready, timeout, since=t0, progress=progress)
        t_end = max((s.t for s in fleet.ready.values()), default=time.monotonic())
        cpu1, m1, req1 = op.cpu_seconds(), op.metrics(), bench.api.request_counts()
        time.sleep(5)  # events and last patches trail the last Ready
        m2, req2 = op.metrics(), bench.api.request_counts()
        op.stop_sampling()
        after_ready = [s.t - t0 for s in fleet.ready.values()]
        measured = {
            "n": n,
            "ready": len(fleet.ready),
            "operator_startup_s": round(startup, 3),
            "create_seconds": round(t_created - t0, 3),
            "all_ready_seconds": round(t_end - t0, 3) if len(fleet.ready) == n else None,
            "ready_latency": summarize(after_ready),
            "ready_curve": curve(after_ready),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "rss_before_mb": round(usage.series[0][1] / MB, 1) if usage.series else None,
            "rss_peak_sampled_mb": round(usage.peak_rss / MB, 1),
            "rss_peak_hwm_mb": round(op.vm_hwm() / MB, 1),
            "threads": op.threads(),
            "status_patches": metric(m1, "steward_status_patches_total")
            - metric(m0, "steward_status_patches_total"),
            "reconciles": metric(m1, "steward_reconciles_total")
            - metric(m0, "steward_reconciles_total"),
            "api_requests_to_ready": operator_requests(req0, req1, n),
            "api_requests_plus_5s": operator_requests(req0, req2, n),
            "status_patches_plus_5s": metric(m2, "steward_status_patches_total")
            - metric(m0, "steward_status_patches_total"),
            "operator_errors": op.errors_in_log(),
        }
    except BaseException:
        fleet.close()
        raise
    return fleet, measured
