"""A container's end is learnt from Docker's events stream: one stream per engine, at once.

A real engine, real containers, ``docker kill``; the probe period is 30 s, so
an end seen within a second was seen because of the ``die`` event.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from steward import Service, ServiceState
from steward.runtimes.container.docker import connect
from steward.runtimes.container.events import engine_events
from tests.support.containers import (
    Images,
    busybox_httpd,
    busybox_sh,
    container_manifest,
    unique_name,
    wait_for,
)
from tests.support.services import Driven

pytestmark = pytest.mark.docker

SEEN_WITHIN = 1.0
"""Generous for a loaded machine; the bench measures the real figure."""
SLOW = {"protocol": "http", "healthCheck": {"http": {"path": "/"}, "periodSeconds": 30}}


def web(images: Images, name: str, **spec: Any) -> dict[str, Any]:
    return container_manifest(name, busybox_httpd(images), SLOW, **spec)


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "steward-docker-events"]


def test_one_stream_tells_each_subscriber_of_its_own_container(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    svcs = []
    for _ in range(3):
        svc = Service.from_manifest(web(docker_images, unique_name("ev")), state_dir=state_dir)
        services.append(svc)
        assert svc.start(timeout=30), svc.status.last_error
        svcs.append(svc)
    fired: dict[int, float] = {}
    watches = []
    for i, svc in enumerate(svcs):
        watch = svc.exit_watch()
        assert watch is not None and watch.fileno() is None
        watch.subscribe(lambda i=i: fired.setdefault(i, time.monotonic()))
        watches.append(watch)
    assert len(stream_threads()) == 1
    events = engine_events(lambda: connect(timeout=None))
    assert events.connected.wait(10)
    t0 = time.monotonic()
    docker_client.api.kill(svcs[1].status.runtime["containerId"], signal="SIGKILL")
    wait_for(lambda: 1 in fired, SEEN_WITHIN, 0.002)
    print(f"docker kill -> die event after {fired[1] - t0:.3f} s")
    time.sleep(0.3)
    assert list(fired) == [1]
    assert watches[1].ended() and not watches[0].ended()
    for w in watches:
        w.close()
    assert len(stream_threads()) == 1


def test_a_container_that_died_before_subscribing_fires_at_once(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    m = busybox_sh(docker_images, "short", "sleep 0.3; exit 3", restartPolicy="Never")
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=0)
    watch = svc.exit_watch()  # taken while it ran: it ends on its own a moment later
    assert watch is not None
    wait_for(watch.ended, 10, 0.01)
    fired = threading.Event()
    watch.subscribe(fired.set)
    assert fired.wait(0.1)
    watch.close()


def test_container_exit_wakes_the_loop(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    svc = Service.from_manifest(
        web(docker_images, unique_name("wake"), restartPolicy="Never"), state_dir=state_dir
    )
    services.append(svc)

    async def main() -> None:
        async with Driven(svc) as d:  # on leaving: cancelled, and the watch unregistered
            await d.until(lambda: svc.status.state is ServiceState.ACTIVE, 30)
            await asyncio.sleep(0.3)
            assert d.loop.exits.armed
            kill = asyncio.create_task(
                asyncio.to_thread(
                    docker_client.api.kill, svc.status.runtime["containerId"], "SIGKILL"
                )
            )
            took = await d.until(lambda: svc.status.state is not ServiceState.ACTIVE, SEEN_WITHIN)
            await kill
            print(f"docker kill -> state {svc.status.state.value} {took:.3f} s")
            assert svc.status.state is ServiceState.ERROR
            assert d.loop.exits.fired == 1
            await asyncio.sleep(0.3)
            assert not d.loop.exits.armed  # nothing runs: nothing to watch

    asyncio.run(main())


def test_a_running_container_is_answered_from_memory_until_docker_says_otherwise(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    """While the events stream reports nothing for the container, the last inspect holds
    (no inspect per probe step); a pause, or a kill, makes the next look a real one."""
    svc = Service.from_manifest(web(docker_images, unique_name("mem")), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=30), svc.status.last_error
    rt = svc.runtime
    watch = svc.exit_watch()  # the stream runs while someone watches
    assert watch is not None
    watch.subscribe(lambda: None)
    try:
        assert engine_events(lambda: connect(timeout=None)).connected.wait(10)
        rt.observe()  # an inspect, with the stream up: remembered
        cached = rt.observe_cached()
        assert cached is not None and cached.state is ServiceState.ACTIVE
        assert cached.details == rt.observe().details  # the same answer as Docker's
        cid = svc.status.runtime["containerId"]
        docker_client.api.pause(cid)
        try:
            wait_for(lambda: rt.observe_cached() is None, SEEN_WITHIN, 0.002)
            assert rt.observe().state is not ServiceState.ACTIVE or rt.observe().message
        finally:
            docker_client.api.unpause(cid)
        wait_for(lambda: rt.observe().state is ServiceState.ACTIVE, 10, 0.02)
        assert rt.observe_cached() is not None
        docker_client.api.kill(cid, signal="SIGKILL")
        wait_for(lambda: rt.observe_cached() is None, SEEN_WITHIN, 0.002)
        wait_for(lambda: rt.observe().state is not ServiceState.ACTIVE, 10, 0.02)
    finally:
        watch.close()
