"""ExitWaker: an armed exit watch wakes the loop once, is unregistered, and never spins.

Real file descriptors (a pipe stands in for a pidfd: both stay readable once
the event happened) and a real event loop; real pidfds of real processes too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable

from steward.engine.watch import ExitWaker
from steward.runtimes.exits import CallbackWatch, ExitWatch, Notify, PidfdWatch, pidfd_open


class PipeWatch(ExitWatch):
    """Readable once something is written; stays readable (as a pidfd after the exit)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.closed = False

    def fileno(self) -> int | None:
        return self.r

    def ended(self) -> bool:
        return False

    def end(self) -> None:
        os.write(self.w, b"x")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.r)
            os.close(self.w)


def test_fd_watch_fires_once_and_is_closed() -> None:
    async def main() -> None:
        woken = asyncio.Event()
        waker = ExitWaker(woken.set)
        watch = PipeWatch()
        waker.arm(lambda: watch)
        assert waker.armed
        waker.arm(lambda: PipeWatch())  # armed already: the source is not asked
        watch.end()
        await asyncio.wait_for(woken.wait(), 2)
        await asyncio.sleep(0.05)  # a readable fd still registered would fire again
        assert waker.fired == 1
        assert watch.closed and not waker.armed

    asyncio.run(main())


def test_end_before_arming_wakes_at_once() -> None:
    async def main() -> None:
        woken = asyncio.Event()
        waker = ExitWaker(woken.set)
        watch = PipeWatch()
        watch.end()  # the workload ended during the step, before the sleep armed
        waker.arm(lambda: watch)
        await asyncio.wait_for(woken.wait(), 2)
        assert waker.fired == 1

    asyncio.run(main())


def test_disarm_unregisters_and_closes() -> None:
    async def main() -> None:
        waker = ExitWaker(lambda: None)
        watch = PipeWatch()
        waker.arm(lambda: watch)
        waker.disarm()
        waker.disarm()
        assert watch.closed and waker.fired == 0

    asyncio.run(main())


def test_none_and_failing_sources_arm_nothing() -> None:
    def broken() -> ExitWatch | None:
        raise RuntimeError("cannot tell")

    async def main() -> None:
        waker = ExitWaker(lambda: None)
        waker.arm(lambda: None)
        waker.arm(broken)
        assert not waker.armed

    asyncio.run(main())


def test_callback_watch_fires_from_another_thread_and_stale_ones_are_ignored() -> None:
    subscribed: list[Notify] = []
    cancelled: list[int] = []

    def register(notify: Notify) -> Callable[[], None]:
        subscribed.append(notify)
        return lambda: cancelled.append(1)

    async def main() -> None:
        woken = asyncio.Event()
        waker = ExitWaker(woken.set)
        first = CallbackWatch(register, lambda: False)
        waker.arm(lambda: first)
        waker.disarm()  # replaced before it fired
        second = CallbackWatch(register, lambda: False)
        waker.arm(lambda: second)
        threading.Thread(target=subscribed[0]).start()  # the dropped one: ignored
        await asyncio.sleep(0.05)
        assert waker.fired == 0
        threading.Thread(target=subscribed[1]).start()
        await asyncio.wait_for(woken.wait(), 2)
        assert waker.fired == 1 and cancelled == [1, 1]

    asyncio.run(main())


def test_pidfd_of_a_real_process_is_readable_once_it_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fd = pidfd_open(proc.pid)
        assert fd is not None
        watch = PidfdWatch(fd)
        assert not watch.ended()
        proc.kill()
        proc.wait()
        assert watch.ended()
        watch.close()
        watch.close()
        assert watch.fileno() is None
    finally:
        proc.kill()
        proc.wait()


def test_after_a_fire_nothing_is_armed_until_a_reconcile_completed() -> None:
    """A step that skips or fails its reconcile (an invalid spec) must not spin on an ended
    workload: the runtime, not having looked, would hand out another readable watch."""
    asked: list[PipeWatch] = []

    def ended_watch() -> ExitWatch:
        watch = PipeWatch()
        watch.end()
        asked.append(watch)
        return watch

    async def main() -> None:
        woken = asyncio.Event()
        waker = ExitWaker(woken.set)
        waker.arm(ended_watch)
        await asyncio.wait_for(woken.wait(), 2)
        woken.clear()
        for _ in range(3):  # steps without a reconcile
            waker.arm(ended_watch)
            await asyncio.sleep(0.02)
        assert len(asked) == 1 and waker.fired == 1 and not woken.is_set()
        waker.reconciled()
        waker.arm(ended_watch)
        await asyncio.wait_for(woken.wait(), 2)
        assert len(asked) == 2 and waker.fired == 2

    asyncio.run(main())
