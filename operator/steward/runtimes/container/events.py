"""Docker's events stream, one per engine, telling container runtimes that a container ended.

Polling ``docker inspect`` finds an exit only at the next reconcile; the
engine's events stream says ``die`` within milliseconds. One thread per
engine reads one stream (filtered to containers Steward manages) and fans the
events out by container id to whoever subscribed, so a thousand containers
cost one connection. A container that died before its subscriber arrived is
remembered (ids are never reused), so a late subscription fires at once.
The stream is opened with a few seconds of replay, and re-opened with
back-off after the engine went away, from the last event seen; after such a
gap every subscriber is told, since an end may have been missed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from steward.runtimes.container.config import LABEL_MANAGED
from steward.runtimes.exits import CallbackWatch, ExitWatch, Notify

log = logging.getLogger("steward.runtimes.container")

REPLAY_SECONDS = 5
"""The first stream starts this far back, covering a die between an inspect and the stream."""
RETRY_FIRST, RETRY_MAX = 0.5, 30.0
DEAD_REMEMBERED = 4096
ENDED = ("die", "destroy")
REVIVED = ("start",)
CHANGED = (*ENDED, *REVIVED, "pause", "unpause", "oom", "restart")
"""Events after which what an inspect said of the container may no longer hold."""

Connect = Callable[[], Any]


class DockerEvents:
    """Subscriptions to the end of containers, served by one events stream."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._subs: dict[str, dict[int, Notify]] = {}
        self._dead: OrderedDict[str, None] = OrderedDict()
        self._changes: OrderedDict[str, int] = OrderedDict()
        self._gaps = 0
        self._next = 0
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._closed = False
        self.connected = threading.Event()
        """Set while a stream is open (tests wait on it)."""

    # -- subscriptions ------------------------------------------------------------
    def watch(self, container_id: str) -> ExitWatch:
        """A watch that fires when ``container_id`` dies (or has died already)."""
        return CallbackWatch(
            lambda notify: self._subscribe(container_id, notify),
            lambda: self.dead(container_id),
        )

    def dead(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._dead

    def version(self, container_id: str) -> tuple[int, int] | None:
        """Changes when the container's state may have (an event of :data:`CHANGED`, a gap
        in the stream); None while no stream is connected. What an inspect saw holds as long
        as this stays the same: the runtime answers from memory meanwhile."""
        if not self.connected.is_set():
            return None
        with self._lock:
            if container_id in self._dead:
                return None
            return (self._gaps, self._changes.get(container_id, 0))

    def _subscribe(self, cid: str, notify: Notify) -> Callable[[], None]:
        with self._lock:
            self._ensure_thread()
            already = cid in self._dead
            token = self._next
            self._next += 1
            if not already:
                self._subs.setdefault(cid, {})[token] = notify
        if already:
            notify()
        return lambda: self._unsubscribe(cid, token)

    def _unsubscribe(self, cid: str, token: int) -> None:
        with self._lock:
            subs = self._subs.get(cid)
            if subs is not None:
                subs.pop(token, None)
                if not subs:
                    del self._subs[cid]

    @property
    def subscribers(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    # -- the stream ---------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="steward-docker-events", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        since = int(time.time()) - REPLAY_SECONDS
        delay = RETRY_FIRST
        gap = False
        while not self._closed:
            try:
                client = self._connect()
                try:
                    stream = client.api.events(
                        since=since,
                        decode=True,
                        filters={"type": "container", "label": [f"{LABEL_MANAGED}=true"]},
                    )
                    self._stream = stream
                    if gap:
                        with self._lock:
                            self._gaps += 1  # what happened meanwhile is unknown
                        self._notify_all()  # an end may have happened while we were away
                    self.connected.set()  # after: a watch made from now on waits for its end
                    delay = RETRY_FIRST
                    for event in stream:
                        since = max(since, int(event.get("time") or since))
                        self._handle(event)
                finally:
                    self.connected.clear()
                    self._stream = None
                    with contextlib.suppress(Exception):
                        client.close()
            except Exception as exc:  # the engine went away: retry, backing off
                if self._closed:
                    return
                log.debug("docker events stream failed: %s", exc)
            if self._closed:
                return
            # Watchers rest long on this stream: wake them, they look for themselves.
            self._notify_all()
            gap = True
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _handle(self, event: dict[str, Any]) -> None:
        if event.get("Type", "container") != "container":
            return
        action = str(event.get("Action") or event.get("status") or "")
        cid = str((event.get("Actor") or {}).get("ID") or event.get("id") or "")
        if not cid:
            return
        if action in CHANGED:
            with self._lock:
                self._changes[cid] = self._changes.get(cid, 0) + 1
                self._changes.move_to_end(cid)
                while len(self._changes) > DEAD_REMEMBERED:
                    self._changes.popitem(last=False)
                    self._gaps += 1  # a forgotten count could come back as an old one
        if action in REVIVED:
            with self._lock:
                self._dead.pop(cid, None)
            return
        if action not in ENDED:
            return
        with self._lock:
            self._dead[cid] = None
            self._dead.move_to_end(cid)
            while len(self._dead) > DEAD_REMEMBERED:
                self._dead.popitem(last=False)
            notify = list((self._subs.pop(cid, None) or {}).values())
        for fn in notify:
            _call(fn)

    def _notify_all(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, {}
        for group in subs.values():
            for fn in group.values():
                _call(fn)

    def close(self) -> None:
        """End the stream and its thread (tests; the operator keeps it for its lifetime)."""
        self._closed = True
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _call(fn: Notify) -> None:
    try:
        fn()
    except Exception:  # one subscriber's failure must not end the stream
        log.exception("exit notification failed")


_ENGINES: dict[str, DockerEvents] = {}
_ENGINES_LOCK = threading.Lock()


def engine_events(connect: Connect) -> DockerEvents:
    """The shared stream of the engine in DOCKER_HOST (one per engine per process)."""
    key = os.environ.get("DOCKER_HOST", "")
    with _ENGINES_LOCK:
        events = _ENGINES.get(key)
        if events is None or events._closed:
            events = _ENGINES[key] = DockerEvents(connect)
        return events
