"""A watch on the ManagedServices of one namespace, every event timestamped on arrival.

"Ready" in the benchmarks is the moment this watch delivers an object whose
status carries ``Ready=True`` — what ``kubectl wait`` and GitOps tools see —
without the start-up cost of a kubectl process per measurement.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.harness.cluster import PLURAL, Api


@dataclass(frozen=True)
class Sighting:
    """One watch event of one object, reduced to what the benchmarks look at."""

    t: float
    """time.monotonic() when the event arrived."""
    type: str
    name: str
    state: str | None
    ready: str | None
    reason: str | None
    generation: int | None
    observed_generation: int | None
    health: str | None
    runtime: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"


def _sighting(t: float, kind: str, obj: dict[str, Any]) -> Sighting:
    meta = obj.get("metadata") or {}
    st = obj.get("status") or {}
    cond: dict[str, Any] = next(
        (c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    return Sighting(
        t=t,
        type=kind,
        name=str(meta.get("name")),
        state=st.get("state"),
        ready=cond.get("status"),
        reason=cond.get("reason"),
        generation=meta.get("generation"),
        observed_generation=st.get("observedGeneration"),
        health=(st.get("health") or {}).get("state"),
        runtime=dict(st.get("runtime") or {}),
        uri=(st.get("endpoint") or {}).get("uri"),
    )


Predicate = Callable[[Sighting], bool]


class Watcher:
    """Background watch; ``wait``/``wait_all`` block until sightings match."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.log: list[Sighting] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> Watcher:
        rv = self._list()
        self._thread = threading.Thread(
            target=self._run, args=(rv,), name=f"watch-{self.namespace}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sock and conn.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _list(self) -> str:
        status, out = self.api.request("GET", self.api.msvc_path(self.namespace), resource=PLURAL)
        if status != 200:
            raise RuntimeError(f"list {self.namespace}: HTTP {status}: {out}")
        return str(out["metadata"]["resourceVersion"])

    def _run(self, rv: str) -> None:
        while not self._stop.is_set():
            try:
                rv = self._watch(rv)
            except Exception:
                if self._stop.is_set():
                    return
                self.reconnects += 1
                time.sleep(0.2)
                try:
                    rv = self._list()
                except Exception:
                    time.sleep(1)

    def _watch(self, rv: str) -> str:
        conn = self.api.connection(timeout=None)
        self._conn = conn
        path = (
            f"{self.api.msvc_path(self.namespace)}?watch=1&allowWatchBookmarks=true"
            f"&resourceVersion={rv}&timeoutSeconds=3600"
        )
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch: HTTP {resp.status}")
        while not self._stop.is_set():
            line = resp.readline()
            t = time.monotonic()
            if not line:
                return rv
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise RuntimeError(f"watch error: {obj}")
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
            if kind == "BOOKMARK":
                continue
            s = _sighting(t, str(kind), obj)
            with self._cond:
                self.log.append(s)
                self._cond.notify_all()
        return rv

    # -- queries -----------------------------------------------------------
    def first(self, name: str, pred: Predicate, since: float = 0.0) -> Sighting | None:
        with self._cond:
            for s in self.log:
                if s.name == name and s.t >= since and pred(s):
                    return s
        return None

    def latest(self, name: str) -> Sighting | None:
        with self._cond:
            for s in reversed(self.log):
                if s.name == name:
                    return s
        return None

    def wait(self, name: str, pred: Predicate, timeout: float, since: float = 0.0) -> Sighting:
        found = self.wait_all([name], pred, timeout, since)
        if name not in found:
            last = self.latest(name)
            raise TimeoutError(f"{name}: not seen within {timeout}s (last: {last})")
        return found[name]

    def wait_all(
        self,
        names: Iterable[str],
        pred: Predicate,
        timeout: float,
        since: float = 0.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Sighting]:
        """First matching sighting per name (after ``since``); returns what matched in time."""
        pending = set(names)
        total = len(pending)
        found: dict[str, Sighting] = {}
        deadline = time.monotonic() + timeout
        index = 0
        last_report = time.monotonic()
        with self._cond:
            while pending:
                while index < len(self.log):
                    s = self.log[index]
                    index += 1
                    if s.name in pending and s.t >= since and pred(s):
                        found[s.name] = s
                        pending.discard(s.name)
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    break
                self._cond.wait(timeout=min(remaining, 1.0))
                if progress is not None and time.monotonic() - last_report >= 5:
                    last_report = time.monotonic()
                    progress(len(found), total)
        return found

    def count(self, since: float, until: float, kinds: tuple[str, ...] = ("MODIFIED",)) -> int:
        with self._cond:
            return sum(1 for s in self.log if since <= s.t < until and s.type in kinds)


def ready(s: Sighting) -> bool:
    return s.is_ready


def deleted(s: Sighting) -> bool:
    return s.type == "DELETED"
