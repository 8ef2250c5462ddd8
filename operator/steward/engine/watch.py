"""Waking a service's loop the moment its workload ends, instead of at the next probe.

The runtime hands out an exit watch (a pidfd, a Docker ``die`` subscription);
:class:`ExitWaker` keeps one armed on the running event loop and, when it
fires, drops it and wakes the loop. A pidfd stays readable after the exit, so
a fired watch is unregistered at once and never re-armed; after a fire, no
watch is armed until a reconcile has completed (``reconciled()``), so the
runtime is asked again only once it has seen the end: a step that skips the
reconcile (an invalid spec) or fails cannot spin on an ended workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from steward.runtimes.exits import ExitWatch

log = logging.getLogger("steward.engine")

WatchSource = Callable[[], "ExitWatch | None"]


class ExitWaker:
    """At most one armed exit watch; ``wake`` is called once when it fires."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._watch: ExitWatch | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fired = 0
        """How many watches fired (tests and metrics read it)."""
        self._stale = False
        """A watch fired and no reconcile has completed since."""

    @property
    def armed(self) -> bool:
        return self._watch is not None

    def arm(self, source: WatchSource) -> None:
        """Arm a watch from ``source`` unless one is armed already (called on the loop)."""
        if self._watch is not None or self._stale:
            return
        try:
            watch = source()
        except Exception:  # a runtime that cannot tell: the next reconcile will see
            log.debug("exit watch unavailable", exc_info=True)
            return
        if watch is None:
            return
        loop = asyncio.get_running_loop()
        fd = watch.fileno()
        self._watch, self._fd, self._loop = watch, fd, loop
        try:
            if fd is not None:
                loop.add_reader(fd, self._fire, watch)
            else:
                watch.subscribe(lambda: _soon(loop, self._fire, watch))
        except (NotImplementedError, OSError, ValueError, RuntimeError):
            self._watch = self._fd = self._loop = None
            watch.close()

    def _fire(self, watch: ExitWatch) -> None:
        if watch is not self._watch:
            return  # a watch dropped in the meantime
        self.disarm()
        self.fired += 1
        self._stale = True
        self._wake()

    def reconciled(self) -> None:
        """A reconcile completed: the runtime has looked, a new watch may be asked for."""
        self._stale = False

    def disarm(self) -> None:
        """Unregister and close the armed watch, if any (idempotent)."""
        watch, fd, loop = self._watch, self._fd, self._loop
        self._watch = self._fd = self._loop = None
        if watch is None:
            return
        if fd is not None and loop is not None and not loop.is_closed():
            loop.remove_reader(fd)  # before close: the fd number may be reused
        watch.close()


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[[ExitWatch], None], arg: ExitWatch) -> None:
    """From the watch's own thread onto the loop; a closed loop has nobody left to wake."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, arg)
