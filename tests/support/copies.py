"""Counting a service's copies machine-wide: the at-most-one check of the failover suites.

A ManagedService under test gets an env marker (``MARK=<service name>``) in its daemon's
environment; :class:`Copies` looks at every process on the machine every ``interval`` s
(whatever its parent: a killed agent's children are re-parented, whatever its network
namespace: the lab's hosts share one PID namespace) and keeps, per sample, the pids carrying
each marker value. ``max_copies(name)`` over the whole run is the assertion; the timestamps
say when a copy was last seen and when the next first appeared. :class:`Sampling` is the
sampler thread itself (other samplers, e.g. the placement suite's, extend it); ``marker()``
reads one process's marker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["Copies", "Sample", "Sampling", "marker"]


def marker(proc: psutil.Process, mark: str) -> str | None:
    """The value of ``mark`` in the environment of ``proc`` (None: no such variable, or the
    process is a zombie, gone, or not readable)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.environ().get(mark)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


@dataclass
class Sampling:
    """A thread that calls ``record()`` every ``interval`` s, from ``start()`` to ``stop()``;
    ``pids_by_name()`` is every pid it saw, by marker value (what must be gone at the end)."""

    interval: float = field(default=0.1, kw_only=True)
    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True, repr=False)
    _thread: threading.Thread | None = field(default=None, kw_only=True, repr=False)

    def record(self) -> None:
        raise NotImplementedError

    def pids_by_name(self) -> dict[str, set[int]]:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.record()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


@dataclass(frozen=True)
class Sample:
    """One look at the machine: ``time.monotonic()`` and marker value -> pids."""

    at: float
    found: dict[str, frozenset[int]]


@dataclass
class Copies(Sampling):
    """Every ``interval`` s, from ``start()`` to ``stop()``: the pids of every (non-zombie)
    python process whose environment has ``mark``, by the marker's value."""

    mark: str
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> dict[str, set[int]]:
        """The machine now (not recorded)."""
        found: dict[str, set[int]] = {}
        for proc in psutil.process_iter(["name"]):
            if "python" not in (proc.info["name"] or ""):
                continue
            if name := marker(proc, self.mark):
                found.setdefault(name, set()).add(proc.pid)
        return found

    def record(self) -> None:
        at = time.monotonic()
        found = {k: frozenset(v) for k, v in self.sample().items()}
        self.samples.append(Sample(at, found))

    def pids_by_name(self) -> dict[str, set[int]]:
        return {name: self.pids(name) for name in self.names()}

    def _recorded(self, since: float | None, until: float | None = None) -> list[Sample]:
        samples = list(self.samples)  # appended by the sampler thread meanwhile
        return [
            s
            for s in samples
            if (since is None or s.at >= since) and (until is None or s.at < until)
        ]

    def max_copies(self, name: str, since: float | None = None, until: float | None = None) -> int:
        """The most copies of ``name`` seen at once (in ``[since, until)``, monotonic)."""
        return max((len(s.found.get(name, ())) for s in self._recorded(since, until)), default=0)

    def names(self) -> set[str]:
        """Every marker value ever seen."""
        return {n for s in self._recorded(None) for n in s.found}

    def pids(self, name: str) -> set[int]:
        """Every pid ever seen carrying ``name``."""
        return {p for s in self._recorded(None) for p in s.found.get(name, ())}

    def first_seen(self, name: str, pid: int) -> float | None:
        """When ``pid`` was first seen carrying ``name`` (None: never)."""
        return next((s.at for s in self._recorded(None) if pid in s.found.get(name, ())), None)

    def last_seen(self, name: str, pid: int) -> float | None:
        """When ``pid`` was last seen carrying ``name`` (None: never)."""
        seen = [s.at for s in self._recorded(None) if pid in s.found.get(name, ())]
        return seen[-1] if seen else None

    def gone_at(self, name: str, pid: int) -> float | None:
        """The first sample without ``pid`` after the last one with it (None: never seen,
        or not gone yet)."""
        last = self.last_seen(name, pid)
        if last is None:
            return None
        return next((s.at for s in self._recorded(last) if pid not in s.found.get(name, ())), None)
