"""A Service (the engine) as the integration suites drive and check it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from steward import Service, ServiceState
from steward.engine.driver import ServiceLoop


def assert_start_fails(svc: Any, reason: str, message: str, timeout: float = 5) -> None:
    """``svc.start()`` fails: state error, MESSAGE in the last error, Ready False for REASON."""
    assert not svc.start(timeout=timeout)
    assert svc.status.state is ServiceState.ERROR
    assert message in svc.status.last_error, svc.status.last_error
    ready = svc.status.condition("Ready")
    assert ready is not None and ready.status == "False", ready
    assert ready.reason == reason, ready


class Driven:
    """A ServiceLoop run on the test's event loop; counts its steps (publishes)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.steps = 0
        self.loop = ServiceLoop(self._publish, service=svc)
        self.task: asyncio.Task[None] | None = None

    async def _publish(self, svc: Service, running_for: float | None) -> None:
        if running_for is None:
            self.steps += 1

    async def __aenter__(self) -> Driven:
        self.task = asyncio.create_task(self.loop.run(lambda: True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        assert not self.loop.exits.armed  # cancelled: the watch is unregistered and closed

    async def until(self, check: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``check()`` holds (polled every 2 ms); fails after ``timeout``."""
        t0 = time.monotonic()
        while not check():
            assert time.monotonic() - t0 < timeout, f"not within {timeout}s: {self.svc.status}"
            await asyncio.sleep(0.002)
        return time.monotonic() - t0
