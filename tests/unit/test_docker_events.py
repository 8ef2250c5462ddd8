"""DockerEvents' fan-out logic, fed by a scripted stream (the real engine: the integration tests).

One stream serves every subscriber; a ``die`` reaches only the subscribers of
that container; a container dead before its subscription fires it at once; a
``start`` revives an id; after the stream broke, everyone is told once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from steward.runtimes.container.events import DockerEvents

END = object()


class ScriptedEngine:
    """``connect()`` for DockerEvents: each stream yields what the test puts, until END."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.streams = 0
        self.filters: list[Any] = []

    def connect(self) -> Any:
        engine = self

        class Stream:
            """Yields what the test puts until END; close() (DockerEvents.close) ends it."""

            def __iter__(self) -> Iterator[dict[str, Any]]:
                while (item := engine.events.get()) is not END:
                    yield item

            def close(self) -> None:
                engine.events.put(END)

        class Api:
            def events(self, since: int, decode: bool, filters: Any) -> Stream:
                engine.streams += 1
                engine.filters.append(filters)
                return Stream()

        class Client:
            api = Api()

            def close(self) -> None:
                return None

        return Client()

    def send(self, action: str, cid: str) -> None:
        self.events.put({"Type": "container", "Action": action, "Actor": {"ID": cid}, "time": 1})


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def events(engine: ScriptedEngine) -> Iterator[DockerEvents]:
    """DockerEvents on the scripted engine; closed after the test."""
    events = DockerEvents(engine.connect)
    yield events
    events.close()


def fired_flag(events: DockerEvents, cid: str) -> tuple[threading.Event, Any]:
    flag = threading.Event()
    watch = events.watch(cid)
    watch.subscribe(flag.set)
    return flag, watch


def test_die_reaches_only_that_containers_subscribers(
    engine: ScriptedEngine, events: DockerEvents
) -> None:
    a1, wa1 = fired_flag(events, "a")
    a2, _ = fired_flag(events, "a")
    b, wb = fired_flag(events, "b")
    assert events.connected.wait(5)
    engine.send("die", "a")
    assert a1.wait(5) and a2.wait(5)
    assert not b.is_set() and not wb.ended() and wa1.ended()
    assert events.subscribers == 1
    wb.close()
    assert events.subscribers == 0
    assert engine.streams == 1
    assert engine.filters[0]["label"] == ["steward.dev/managed=true"]


def test_dead_before_subscribing_fires_at_once_until_started_again(
    engine: ScriptedEngine, events: DockerEvents
) -> None:
    _, first = fired_flag(events, "x")  # starts the stream
    assert events.connected.wait(5)
    engine.send("die", "c")
    engine.send("die", "x")
    assert _wait(lambda: events.dead("c"))
    late, _ = fired_flag(events, "c")
    assert late.is_set()
    engine.send("start", "c")  # `docker start` of the same container: alive again
    assert _wait(lambda: not events.dead("c"))
    again, _ = fired_flag(events, "c")
    assert not again.is_set()
    first.close()


def test_a_broken_stream_reopens_and_tells_everyone(
    engine: ScriptedEngine, events: DockerEvents
) -> None:
    flag, _ = fired_flag(events, "y")
    assert events.connected.wait(5)
    engine.events.put(END)  # the engine went away
    assert flag.wait(5)  # told at the break: an end may go unseen while it is down
    assert _wait(lambda: engine.streams == 2)  # and the stream reopens
    later, _ = fired_flag(events, "z")
    assert events.connected.wait(5)
    assert not later.wait(0.2)  # a watch made after the reconnect waits for its own end


def _wait(check: Any, timeout: float = 5) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if check():
            return True
        done.wait(0.01)
    return bool(check())


def test_the_version_moves_with_every_state_change_and_a_gap(
    engine: ScriptedEngine, events: DockerEvents
) -> None:
    """What the container runtime keys its cached inspect on: the same version means no
    event since, so the inspect still holds."""
    assert events.version("c") is None  # no stream yet: nothing can be vouched for
    fired_flag(events, "other")  # a subscription starts the stream
    assert events.connected.wait(5)
    v0 = events.version("c")
    assert v0 is not None
    engine.send("exec_start", "c")  # not a state change
    engine.send("pause", "other")  # another container's
    assert _wait(lambda: events.version("other") != v0)
    assert events.version("c") == v0
    for action in ("pause", "unpause", "oom", "restart", "start"):
        before = events.version("c")
        engine.send(action, "c")
        assert _wait(lambda before=before: events.version("c") != before), action  # type: ignore[misc]
    engine.send("die", "c")
    assert _wait(lambda: events.version("c") is None)  # dead: never from memory
    engine.send("start", "c")
    assert _wait(lambda: events.version("c") is not None)
    before = events.version("c")
    engine.events.put(END)  # the stream breaks and comes back
    assert _wait(lambda: engine.streams == 2 and events.connected.is_set())
    assert _wait(lambda: events.version("c") not in (None, before))  # a gap: start over
