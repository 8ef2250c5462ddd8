"""The steady state on a real daemon: probing a healthy service costs no thread hop and no write.

``Service.areconcile`` is what both adapters run every period for every
service. When nothing changes (the process runs, the probe passes) the step
records the probe on the event loop: no worker thread for the update (and
none for the observation when the runtime declares it cheap), no status file
rewritten, the state and conditions untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from steward import Service, ServiceState
from steward.api.status import HealthState
from tests.support.manifests import http_daemon_spec, manifest


class CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _until_healthy(svc: Service, pool: CountingPool, timeout: float = 30) -> None:
    async def drive() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delay = await svc.areconcile(pool)
            if svc.status.health.state is HealthState.HEALTHY:
                return
            await asyncio.sleep(min(delay, 0.05))
        raise AssertionError(f"not healthy: {svc.status.health.message}")

    asyncio.run(drive())


def _mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}


def test_steady_probe_steps_stay_on_the_loop(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(manifest("steady", http_daemon_spec()), state_dir=state_dir)
    services.append(svc)
    with CountingPool() as pool:
        _until_healthy(svc, pool)
        assert svc.status.state is ServiceState.ACTIVE
        files = _mtimes(svc.service_dir)
        ready = svc.status.condition("Ready")
        probes_before = svc.status.health.consecutive_successes
        pool.submitted = 0
        steps = 5

        async def steady() -> list[float]:
            delays = []
            for _ in range(steps):
                svc.prober.last_probe = 0.0  # a probe is due at every step
                delays.append(await svc.areconcile(pool))
            return delays

        delays = asyncio.run(steady())
    assert svc.runtime.observe_cached() is not None  # the daemon answers from memory...
    assert pool.submitted == 0  # ...so no steady step leaves the loop, not even to observe
    assert svc.status.health.consecutive_successes == probes_before + steps
    assert svc.status.state is ServiceState.ACTIVE
    assert svc.status.condition("Ready") == ready
    assert _mtimes(svc.service_dir) == files  # nothing written
    assert all(1.0 < d <= 2.0 for d in delays)  # the next probe, one period on


def test_a_failed_probe_leaves_the_loop_for_the_worker(
    state_dir: Path, services: list[Service]
) -> None:
    """Anything but the quiet case (here: the process is gone) is decided in the worker."""
    svc = Service.from_manifest(manifest("leaves", http_daemon_spec()), state_dir=state_dir)
    services.append(svc)
    with CountingPool() as pool:
        _until_healthy(svc, pool)
        svc.runtime.stop(force=True)
        pool.submitted = 0
        svc.prober.last_probe = 0.0
        asyncio.run(svc.areconcile(pool))
        assert pool.submitted >= 1
    assert svc.status.state is not ServiceState.ACTIVE
