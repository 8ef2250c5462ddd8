"""A daemon's end wakes its loop at once, whatever the probe period (pidfd exit watches).

Real daemons, a real event loop driving the engine's ServiceLoop (what the
operator and ``steward local`` run), real SIGKILLs. The probe period is 30 s
everywhere, so anything seen within a second was seen because of the wake.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from steward import Service, ServiceState
from steward.engine.driver import ServiceLoop
from steward.runtimes.exits import fd_readable
from steward.runtimes.process import ProcessRecord
from tests.support.manifests import http_daemon_spec, manifest
from tests.support.paths import REPO
from tests.support.services import Driven

SLOW_PERIOD = 30
SEEN_WITHIN = 1.0
"""Generous for a loaded machine; the bench measures the real figure (tens of ms)."""


def slow_probed(name: str, **spec: Any) -> dict[str, Any]:
    body = http_daemon_spec()
    body["endpoint"]["healthCheck"]["periodSeconds"] = SLOW_PERIOD
    body.update(spec)
    return manifest(name, body)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_crash_is_seen_at_once_and_the_loop_then_rests(
    state_dir: Path, services: list[Service]
) -> None:
    svc = Service.from_manifest(slow_probed("crash", restartPolicy="Never"), state_dir=state_dir)
    services.append(svc)

    async def main() -> None:
        async with Driven(svc) as d:
            await d.until(lambda: svc.status.state is ServiceState.ACTIVE, 20)
            await asyncio.sleep(0.2)
            assert d.loop.exits.armed
            os.kill(svc.status.runtime["pid"], signal.SIGKILL)
            took = await d.until(lambda: svc.status.state is not ServiceState.ACTIVE, SEEN_WITHIN)
            print(f"SIGKILL -> state {svc.status.state.value} after {took:.3f} s")
            assert svc.status.state is ServiceState.ERROR
            assert "SIGKILL" in svc.status.last_error
            assert d.loop.exits.fired == 1
            steps = d.steps
            await asyncio.sleep(1.0)
            # Nothing runs: no watch, and no spinning on the exited process's pidfd.
            assert d.steps - steps <= 2
            assert not d.loop.exits.armed

    run(main)


def test_restart_follows_the_wake(state_dir: Path, services: list[Service]) -> None:
    m = slow_probed("again", restartPolicy="Always", backoff={"initialSeconds": 0})
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)

    async def main() -> None:
        async with Driven(svc) as d:
            await d.until(lambda: svc.status.state is ServiceState.ACTIVE, 20)
            url = svc.status.endpoint.uri
            assert url
            for _ in range(3):  # each new run gets a watch of its own
                pid = svc.status.runtime["pid"]
                await asyncio.sleep(0.2)
                os.kill(pid, signal.SIGKILL)
                t0 = time.monotonic()
                took = await d.until(lambda p=pid: svc.status.runtime.get("pid") != p, SEEN_WITHIN)
                served = await _until_ok(url, 10)
                print(
                    f"SIGKILL -> restarted {took:.3f} s, -> HTTP 200 {time.monotonic() - t0:.3f} s"
                )
                assert served < 5
            assert d.loop.exits.fired == 3
            assert svc.status.restarts == 3

    run(main)


async def _until_ok(url: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            ok = await asyncio.to_thread(lambda: requests.get(url, timeout=1).status_code == 200)
        except requests.RequestException:
            ok = False
        if ok:
            return time.monotonic() - t0
        await asyncio.sleep(0.005)
    raise AssertionError(f"{url} did not answer within {timeout}s")


ADOPTABLE = """
import json, sys
from steward import Service
svc = Service.from_manifest(json.loads(sys.argv[1]), state_dir=sys.argv[2])
assert svc.start(timeout=20), svc.status.last_error
print(svc.status.runtime["pid"])
"""


def test_adopted_daemon_of_an_earlier_process_wakes_too(
    state_dir: Path, services: list[Service]
) -> None:
    """Started by another interpreter that has exited: not our child, watched by its pidfd."""
    m = slow_probed("adopted", restartPolicy="Never")
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    out = subprocess.run(
        [sys.executable, "-c", ADOPTABLE, json.dumps(m), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    pid = int(out.stdout.split()[-1])
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert svc.status.runtime.get("pid", pid) == pid

    async def main() -> None:
        async with Driven(svc) as d:
            await d.until(lambda: svc.status.state is ServiceState.ACTIVE, 20)
            assert svc.status.runtime["pid"] == pid
            await asyncio.sleep(0.2)
            assert d.loop.exits.armed
            os.kill(pid, signal.SIGKILL)
            took = await d.until(lambda: svc.status.state is not ServiceState.ACTIVE, SEEN_WITHIN)
            print(f"adopted: SIGKILL -> state {svc.status.state.value} after {took:.3f} s")
            assert d.loop.exits.fired == 1

    run(main)


def test_library_sees_the_exit_when_asked(
    state_dir: Path, services: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No loop: Service.status after refresh() tells the truth at once; the steady path
    answers from the cached record (no pid file read per observe)."""
    svc = Service.from_manifest(slow_probed("lib", restartPolicy="Never"), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    loads: list[Path] = []
    real_load = ProcessRecord.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ProcessRecord], path: Path) -> ProcessRecord | None:
        loads.append(path)
        return real_load(cls, path)  # type: ignore[no-any-return]

    monkeypatch.setattr(ProcessRecord, "load", classmethod(counting))
    for _ in range(50):
        assert svc.runtime.observe().state is ServiceState.ACTIVE
    assert loads == []
    os.kill(svc.status.runtime["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    while svc.runtime.observe().running:  # Popen.poll(): true as soon as the kernel says
        assert time.monotonic() - t0 < SEEN_WITHIN
        time.sleep(0.001)
    assert svc.is_failed
    assert "SIGKILL" in svc.status.last_error


def test_watch_of_a_stopped_daemon_fires_and_nothing_is_left_to_watch(
    state_dir: Path, services: list[Service]
) -> None:
    svc = Service.from_manifest(slow_probed("stopped"), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    watch = svc.exit_watch()
    assert watch is not None
    fd = watch.fileno()
    assert fd is not None and not fd_readable(fd)
    assert svc.stop(timeout=10)
    assert watch.ended()
    watch.close()
    assert svc.exit_watch() is None


def test_the_library_supervise_loop_is_woken_too(state_dir: Path, services: list[Service]) -> None:
    """Service.supervise() (a thread, no event loop) waits on the same watch."""
    svc = Service.from_manifest(slow_probed("lib", restartPolicy="Never"), state_dir=state_dir)
    services.append(svc)
    stop = threading.Event()
    thread = threading.Thread(target=svc.supervise, args=(stop,), daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        while svc.status.state is not ServiceState.ACTIVE:
            assert time.monotonic() - t0 < 20, svc.status
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(svc.status.runtime["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        while svc.status.state is ServiceState.ACTIVE:
            assert time.monotonic() - t0 < SEEN_WITHIN, "supervise() slept through the crash"
            time.sleep(0.002)
        print(f"supervise: SIGKILL -> {svc.status.state.value} after {time.monotonic() - t0:.3f} s")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_watched_daemon_without_probes_rests_and_its_crash_still_wakes(
    state_dir: Path, services: list[Service]
) -> None:
    """No endpoint: nothing to probe, and the pidfd tells of the end, so the loop does not
    look every second (an idle fleet costs ~nothing) yet a crash is seen at once."""
    body = {"daemon": {"command": [sys.executable, "-c", "import time; time.sleep(600)"]}}
    svc = Service.from_manifest(manifest("idle", {**body, "restartPolicy": "Never"}), state_dir)
    services.append(svc)

    async def main() -> None:
        async with Driven(svc) as d:
            await d.until(lambda: svc.status.state is ServiceState.ACTIVE, 20)
            await asyncio.sleep(0.2)
            steps = d.steps
            await asyncio.sleep(2.5)
            assert d.steps == steps, "the loop looked again although only the exit can change"
            assert d.loop.exits.armed
            os.kill(svc.status.runtime["pid"], signal.SIGKILL)
            took = await d.until(lambda: svc.status.state is not ServiceState.ACTIVE, SEEN_WITHIN)
            print(f"unprobed SIGKILL -> state {svc.status.state.value} after {took:.3f} s")
            assert svc.status.state is ServiceState.ERROR

    run(main)


def test_a_wake_during_a_step_is_not_lost(state_dir: Path, services: list[Service]) -> None:
    """A change that arrives while a step runs (a new spec's watch event) gets the next
    step at once, not at the next resync a minute later."""
    body = {"daemon": {"command": [sys.executable, "-c", "import time; time.sleep(600)"]}}
    svc = Service.from_manifest(manifest("woken", body), state_dir)
    services.append(svc)
    steps: list[float] = []
    wake_in_step = threading.Event()

    async def main() -> None:
        async def publish(s: Service, running_for: float | None) -> None:
            if running_for is None:
                steps.append(time.monotonic())
                if wake_in_step.is_set():
                    wake_in_step.clear()
                    loop.wake()  # as the adapter does on a watch event, mid-step

        loop = ServiceLoop(publish, service=svc)
        task = asyncio.create_task(loop.run(lambda: True))
        try:
            t0 = time.monotonic()
            while svc.status.state is not ServiceState.ACTIVE:
                assert time.monotonic() - t0 < 20, svc.status
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            resting = len(steps)
            await asyncio.sleep(1.0)
            assert len(steps) == resting  # resting: a watched daemon without probes
            wake_in_step.set()
            loop.wake()  # one step now; it is woken again while it runs
            t0 = time.monotonic()
            while len(steps) < resting + 2:
                assert time.monotonic() - t0 < 2.0, "the wake during the step was lost"
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            assert len(steps) == resting + 2  # and then it rests again
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main)
