"""When to probe a running service, and whether its startup allowance ran out.

The clock lives here (monotonic), so decide() stays pure: it gets the
answers as booleans.
"""

from __future__ import annotations

import time

from steward.api.endpoint import EndpointSpec, HealthCheck
from steward.api.status import HealthState, HealthStatus
from steward.health.probes import ProbeResult, ProbeTarget, run_probe
from steward.runtimes.base import Observation

STARTUP_PROBE_INTERVAL = 0.05
"""Until the first success, probe this often (bounded by periodSeconds)..."""
FIRST_PROBE_INTERVAL = 0.01
FIRST_PROBE_SECONDS = 0.5
"""...and more often in the first half second of a run, when most servers start listening:
a probe that finds the port closed costs a refused connect, and a start is seen Ready
within 10 ms of the server answering instead of up to 50 ms."""


def startup_interval(since_start: float, period: float) -> float:
    """How long to wait between probes before the first success."""
    interval = FIRST_PROBE_INTERVAL if since_start < FIRST_PROBE_SECONDS else STARTUP_PROBE_INTERVAL
    return min(period, interval)


class Prober:
    """Probe timing for one service's endpoint (None: nothing to probe)."""

    def __init__(self) -> None:
        self._endpoint: EndpointSpec | None = None
        self.check: HealthCheck | None = None
        """The endpoint's effective check, resolved once per spec (not per step)."""
        self.last_probe = 0.0
        self.run_started = 0.0

    @property
    def endpoint(self) -> EndpointSpec | None:
        return self._endpoint

    @endpoint.setter
    def endpoint(self, value: EndpointSpec | None) -> None:
        self._endpoint = value
        self.check = value.effective_health_check() if value is not None else None

    def started(self) -> None:
        """A run began now: the initial delay and the startup allowance count from here."""
        self.run_started = time.monotonic()
        self.last_probe = 0.0

    def target(self, obs: Observation, port: int | None) -> ProbeTarget | None:
        ep = self.endpoint
        if ep is None:
            return None
        if obs.endpoint_uri:
            try:
                return ProbeTarget.from_uri(obs.endpoint_uri)
            except ValueError:
                return None
        if port is None:
            return None
        return ProbeTarget(ep.protocol, ep.host, port)

    def due(self, obs: Observation, health: HealthStatus) -> bool:
        check = self.check
        if check is None or not obs.running:
            return False
        now = time.monotonic()
        if now - self.run_started < check.initial_delay_seconds:
            return False
        interval = (
            check.period_seconds
            if health.state is not HealthState.UNKNOWN
            else startup_interval(now - self.run_started, check.period_seconds)
        )
        return now - self.last_probe >= interval

    async def probe(self, obs: Observation, port: int | None) -> ProbeResult | None:
        """Run the endpoint's probe once (asynchronously)."""
        target = self.target(obs, port)
        if self.check is None or target is None:
            return None
        self.last_probe = time.monotonic()
        return await run_probe(self.check, target)

    def startup_expired(self, health: HealthStatus) -> bool:
        """Probes have failed for longer than initialDelay + failureThreshold x period."""
        check = self.check
        if check is None or health.state is not HealthState.UNKNOWN:
            return False
        allowance = check.initial_delay_seconds + check.failure_threshold * check.period_seconds
        return (
            health.consecutive_failures >= check.failure_threshold
            and time.monotonic() - self.run_started > allowance
        )

    def startup_delay(self) -> float:
        """Until the next startup probe of the current run."""
        period = self.check.period_seconds if self.check is not None else STARTUP_PROBE_INTERVAL
        return startup_interval(time.monotonic() - self.run_started, period)

    def next_in(self, health: HealthStatus) -> float:
        """Seconds until the next probe is due, for a running service."""
        if self.check is None:
            return 1.0
        if health.state is HealthState.UNKNOWN:
            return self.startup_delay()
        period = self.check.period_seconds
        return max(0.05, period - (time.monotonic() - self.last_probe))
