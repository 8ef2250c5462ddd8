"""The scenarios, in run order: each module's ``run(bench) -> ScenarioResult``."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness.context import Bench
from bench.harness.report import ScenarioResult
from bench.scenarios import (
    p1_latency,
    p2_scale,
    p3_steady,
    p4_detection,
    p5_terraform,
    p6_container,
    p7_failover,
    peers,
    soak,
)

SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "p1": p1_latency.run,
    "p2": p2_scale.run,
    "p3": p3_steady.run,
    "p4": p4_detection.run,
    "p5": p5_terraform.run,
    "p6": p6_container.run,
    "p7": p7_failover.run,
    "peers": peers.run,
    "soak": soak.run,
}
OPT_IN = frozenset({"soak"})
"""Run only when named with ``--only`` (the soak takes 30 minutes)."""
