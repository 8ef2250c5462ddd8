"""Assertions on a Service (the engine) the integration suites share."""

from __future__ import annotations

from typing import Any

from steward import ServiceState


def assert_start_fails(svc: Any, reason: str, message: str, timeout: float = 5) -> None:
    """``svc.start()`` fails: state error, MESSAGE in the last error, Ready False for REASON."""
    assert not svc.start(timeout=timeout)
    assert svc.status.state is ServiceState.ERROR
    assert message in svc.status.last_error, svc.status.last_error
    ready = svc.status.condition("Ready")
    assert ready is not None and ready.status == "False", ready
    assert ready.reason == reason, ready
