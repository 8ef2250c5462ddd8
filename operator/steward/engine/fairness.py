"""Fair sharing of a worker pool between namespaces, and which lane a step runs in.

One namespace's slow Terraform applies or stubborn stops must not starve
another's reconciles. A ``FairPool`` is one shared thread pool whose callers
submit through per-namespace views (``for_namespace``): a namespace runs at
most ``cap`` tasks at once while others have work; beyond that its submissions
wait in its own FIFO queue, and whenever a worker frees up it goes to the next
namespace, round robin, that has work queued and is under its cap. Work-conserving:
with nobody else waiting, a namespace borrows beyond its cap, all but the last
free worker, which is kept for whoever comes next (``pick``).

Stops and destroys get their own lane (a second ``FairPool`` per flavor, see
``lane_for``): a daemon that ignores SIGTERM holds a stop-lane worker for its
grace period, never a worker that another service's reconcile needs.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from steward.api.state import AdminState, ServiceState


def default_cap(workers: int) -> int:
    """Half the pool per namespace (at least one): two busy namespaces cannot fill it alone."""
    return max(1, workers // 2)


def pick(order: Sequence[str], running: Mapping[str, int], cap: int, free: int = 1) -> str | None:
    """Who gets a free worker: the first namespace in round-robin ``order`` (those with work
    queued) under ``cap``; if none is, the first one borrows beyond its cap while more than
    one worker is free. The last free worker is never lent: a namespace that arrives gets
    it at once, so a lone tenant keeps all but one worker busy and a newcomer's first
    task still never waits behind another's long step."""
    for namespace in order:
        if running.get(namespace, 0) < cap:
            return namespace
    if free > 1 and order:
        return order[0]
    return None


class Lane(StrEnum):
    """Which of a flavor's two pools a blocking call runs in."""

    RECONCILE = "reconcile"
    STOP = "stop"


def lane_for(admin_state: AdminState, state: ServiceState, *, deleting: bool = False) -> Lane:
    """A step that will stop or destroy (the finalizer, adminState inactive on something
    not yet inactive) runs in the stop lane; every other step in the reconcile lane."""
    if deleting or (admin_state is AdminState.INACTIVE and state is not ServiceState.INACTIVE):
        return Lane.STOP
    return Lane.RECONCILE


@dataclass
class _Task:
    namespace: str
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class Load:
    """A snapshot of a pool: tasks running and waiting, per namespace."""

    running: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)


class FairPool:
    """``workers`` shared threads; each namespace runs at most ``cap`` tasks at a time."""

    def __init__(self, workers: int, cap: int, name: str = "steward") -> None:
        self.workers = max(1, workers)
        self.cap = max(1, cap)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._queued: dict[str, collections.deque[_Task]] = {}
        self._order: collections.deque[str] = collections.deque()
        self._running: collections.Counter[str] = collections.Counter()
        self._busy = 0
        self._closed = False
        self._views: dict[str, NamespaceExecutor] = {}

    def for_namespace(self, namespace: str) -> NamespaceExecutor:
        """The Executor a namespace's callers use (``loop.run_in_executor`` takes it)."""
        with self._lock:
            view = self._views.get(namespace)
            if view is None:
                view = self._views[namespace] = NamespaceExecutor(self, namespace)
            return view

    def load(self) -> Load:
        with self._lock:
            return Load(
                running={ns: n for ns, n in self._running.items() if n},
                queued={ns: len(q) for ns, q in self._queued.items()},
            )

    def submit_for(
        self, namespace: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queued.setdefault(namespace, collections.deque()).append(
                _Task(namespace, future, fn, args, kwargs)
            )
            if namespace not in self._order:
                self._order.append(namespace)
            ready = self._take_ready()
        self._dispatch(ready)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; queued tasks are cancelled when ``cancel_futures``."""
        with self._lock:
            self._closed = True
            dropped = [t for q in self._queued.values() for t in q] if cancel_futures else []
            if cancel_futures:
                self._queued.clear()
                self._order.clear()
        for task in dropped:
            task.future.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    # ------------------------------------------------------------ internals
    def _take_ready(self) -> list[_Task]:
        """Under the lock: the tasks to hand to the pool now, one per free worker."""
        ready: list[_Task] = []
        while self._busy < self.workers:
            namespace = pick(self._order, self._running, self.cap, self.workers - self._busy)
            if namespace is None:
                break
            queue = self._queued[namespace]
            task = queue.popleft()
            self._order.remove(namespace)
            if queue:
                self._order.append(namespace)  # to the back: the next worker goes elsewhere
            else:
                del self._queued[namespace]
            if task.future.cancelled():  # given up while it waited (a cancelled await)
                continue
            self._running[namespace] += 1
            self._busy += 1
            ready.append(task)
        return ready

    def _dispatch(self, ready: list[_Task]) -> None:
        for task in ready:
            try:
                inner = self._pool.submit(self._run, task)
            except RuntimeError:  # the pool shut down meanwhile
                self._abandon(task)
                continue
            inner.add_done_callback(functools.partial(self._dropped, task))

    def _dropped(self, task: _Task, inner: Future[None]) -> None:
        if inner.cancelled():  # never ran (the pool was shut down with cancel_futures)
            self._abandon(task)

    def _abandon(self, task: _Task) -> None:
        """A handed-over task the pool dropped (shutdown): cancel it and free its slot."""
        task.future.cancel()
        self._release(task.namespace)

    def _release(self, namespace: str) -> None:
        with self._lock:
            self._running[namespace] -= 1
            if not self._running[namespace]:
                del self._running[namespace]
            self._busy -= 1
            ready = [] if self._closed else self._take_ready()
        self._dispatch(ready)

    def _run(self, task: _Task) -> None:
        try:
            if not task.future.set_running_or_notify_cancel():
                return
            try:
                result = task.fn(*task.args, **task.kwargs)
            except BaseException as exc:
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
        finally:
            self._release(task.namespace)


class NamespaceExecutor(Executor):
    """One namespace's view of a ``FairPool``; shutting it down is the pool's business."""

    def __init__(self, pool: FairPool, namespace: str) -> None:
        self.pool = pool
        self.namespace = namespace

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.pool.submit_for(self.namespace, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing: the pool is shared with other namespaces."""
