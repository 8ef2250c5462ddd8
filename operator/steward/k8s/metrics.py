"""Prometheus metrics of the operator: reconciles, errors, probe latency, services by state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RECONCILES = Counter("steward_reconciles_total", "Reconcile steps run", ["flavor"])
RECONCILE_ERRORS = Counter(
    "steward_reconcile_errors_total", "Reconcile steps that raised", ["flavor"]
)
STATUS_PATCHES = Counter("steward_status_patches_total", "Status patches sent to the API server")
WATCH_EVENTS = Counter(
    "steward_watch_events_total",
    "ManagedService watch events received (an agent receives only its own host's)",
)
PROBE_LATENCY = Histogram(
    "steward_probe_latency_seconds",
    "Duration of endpoint probes",
    ["flavor"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class ServicesByState(Collector):
    """steward_services{flavor,state}: computed at scrape time from what the operator tracks."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "steward_services", "ManagedServices by flavor and state", labels=["flavor", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for key in self.source():
            counts[key] = counts.get(key, 0) + 1
        for (flavor, state), n in sorted(counts.items()):
            family.add_metric([flavor, state], n)
        yield family


def serve(port: int, addr: str, source: Callable[[], Iterable[tuple[str, str]]]) -> None:
    """Register the services gauge and serve /metrics on ``addr:port``."""
    REGISTRY.register(ServicesByState(source))
    start_http_server(port, addr=addr)
