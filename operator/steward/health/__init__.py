"""Endpoints and health: port choice, asynchronous HTTP/TCP probes, thresholds."""

from steward.health.ports import PortRegistry, PortUnavailable, port_available
from steward.health.probes import ProbeResult, ProbeTarget, render_uri, run_probe
from steward.health.tracker import record_probe, reset

__all__ = [
    "PortRegistry",
    "PortUnavailable",
    "ProbeResult",
    "ProbeTarget",
    "port_available",
    "record_probe",
    "render_uri",
    "reset",
    "run_probe",
]
