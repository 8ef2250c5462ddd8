"""Driving one ``Service`` from plain threads: the library's loop and sync probe calls.

The operator and local mode share ``engine.driver``'s asyncio loop; a library user who
calls ``svc.supervise()`` or the sync verbs gets the same wake-on-exit here, without an
event loop of their own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from steward.runtimes.exits import ExitWatch, fd_readable

T = TypeVar("T")

SUPERVISE_SLICE = 0.1
"""How often a supervising thread looks at its stop event while it waits."""


def run_coro(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None) -> T:
    """Run a coroutine from sync code, even when the caller already has a loop; ``loop``:
    one the caller keeps for a series of calls (a fresh loop per probe costs ~1.5 ms)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if loop is not None:
            return loop.run_until_complete(coro)
        return asyncio.run(coro)
    box: list[T] = []
    t = threading.Thread(target=lambda: box.append(asyncio.run(coro)))
    t.start()
    t.join()
    return box[0]


def supervise(
    reconcile: Callable[[], float],
    exit_watch: Callable[[], ExitWatch | None],
    stop: threading.Event,
) -> None:
    """Reconcile until ``stop`` is set, sleeping as each step asks; the workload's end
    (its exit watch) cuts the sleep short, as it wakes the operator's loop."""
    while not stop.is_set():
        delay = reconcile()
        watch = exit_watch()
        try:
            sleep_until_exit(stop, delay, watch)
        finally:
            if watch is not None:
                watch.close()


def sleep_until_exit(stop: threading.Event, delay: float, watch: ExitWatch | None) -> None:
    """Wait ``delay`` seconds, less when ``stop`` is set or the watched workload ends."""
    deadline = time.monotonic() + delay
    fd = watch.fileno() if watch is not None else None
    ended = threading.Event()
    if watch is not None and fd is None:
        watch.subscribe(ended.set)
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        step = min(left, SUPERVISE_SLICE)
        if fd is not None:
            if fd_readable(fd, step):
                return
        elif ended.wait(step):
            return
