"""Thresholds over probe results: Kubernetes failureThreshold / successThreshold."""

from __future__ import annotations

from datetime import datetime

from steward.api.endpoint import HealthCheck
from steward.api.status import HealthState, HealthStatus
from steward.health.probes import ProbeResult


def record_probe(
    health: HealthStatus, check: HealthCheck, result: ProbeResult, now: datetime
) -> bool:
    """Fold one result into ``health``; True when ``health.state`` changed."""
    before = health.state
    health.last_probe_time = now
    health.latency_seconds = round(result.latency, 4)
    if result.ok:
        health.consecutive_successes += 1
        # Assigned only when they change: every assignment is validated, at every probe.
        if health.consecutive_failures:
            health.consecutive_failures = 0
        if health.message:
            health.message = ""
        if (
            health.state is not HealthState.HEALTHY
            and health.consecutive_successes >= check.success_threshold
        ):
            health.state = HealthState.HEALTHY
    else:
        health.consecutive_failures += 1
        health.consecutive_successes = 0
        health.message = result.message
        # Before the first success the service is starting, not unhealthy: the
        # engine gives it initialDelay + failureThreshold x period (a startup probe).
        if (
            health.state is HealthState.HEALTHY
            and health.consecutive_failures >= check.failure_threshold
        ):
            health.state = HealthState.UNHEALTHY
    return health.state is not before


def reset(health: HealthStatus) -> None:
    """Forget probe history (a new run starts from unknown)."""
    health.state = HealthState.UNKNOWN
    health.consecutive_failures = 0
    health.consecutive_successes = 0
    health.message = ""
