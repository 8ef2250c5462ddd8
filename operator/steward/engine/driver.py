"""The per-service control loop, owned once and used by both adapters.

As in controller-runtime, the loop is written one time and the adapters only
supply what differs: where the wanted spec comes from (``refresh``: the kopf
body, or the manifest files), where status goes (``publish``: the status
subresource and Events, or the terminal), and per-flavor follow-ups (hooks,
such as writing Terraform outputs to a Secret). One step:

1. ``refresh``: take a changed spec (or report an invalid one and sleep);
2. re-check referenced Secrets/ConfigMaps every ``reference_check_seconds``
   and replace the workload when their values changed;
3. reconcile, publishing every ``progress_interval`` while it runs long
   (a Terraform apply), so status and Events keep flowing;
4. run the hooks, publish, and sleep until the reconcile's answer or a wake-up:
   a watch event, or the end of the workload (the runtime's exit watch, armed
   for every sleep, so a crash is seen at once at any probe period).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from steward.api.state import ServiceState
from steward.engine.service import Service
from steward.engine.watch import ExitWaker

log = logging.getLogger("steward.engine")

Publish = Callable[[Service, "float | None"], Awaitable[None]]
"""Write status and Events out; the float is how long a still-running step has taken."""
Hook = Callable[[Service], Awaitable[None]]
Refresh = Callable[["ServiceLoop"], Awaitable["float | None"]]
"""Bring ``loop.service`` in line with the wanted spec; a float means: do not reconcile,
sleep this long (the spec is invalid). Creates the Service when there is none yet."""
OnError = Callable[[Service, Exception], None]

MIN_SLEEP = 0.02


def _retrieved(task: asyncio.Future[None]) -> None:
    """A progress publish that failed is logged, not left as an unretrieved exception."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("progress publish failed: %s", task.exception())


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def publish_due(
    state: ServiceState,
    before: ServiceState | None,
    next_step_in: float,
    held_for: float | None,
    hold: float,
) -> bool:
    """Write status now, or hold a start-up status the next step will supersede.

    A service coming up is usually Ready a few milliseconds later; writing its
    ``pending_startup`` first was one more status PATCH (and watch event) per service.
    Held for at most ``hold`` seconds (then written, as progress is during a long step),
    and only while the next step is due sooner than that. Never held when it follows
    ``active`` (``before``: status.lastState): a run that ended and was restarted at once
    must show, or a crash would vanish from the status. Every other state is written at
    once. ``held_for``: how long a status has been held already (None: nothing held).
    """
    if (
        state is not ServiceState.PENDING_STARTUP
        or before is ServiceState.ACTIVE
        or next_step_in >= hold
    ):
        return True
    return held_for is not None and held_for >= hold


@dataclass(frozen=True)
class LoopSettings:
    progress_interval: float = 1.0
    reference_check_seconds: float = 10.0
    error_delay: float = 5.0


class ServiceLoop:
    """Drives one Service until told to stop; ``wake()`` cuts a sleep short."""

    def __init__(
        self,
        publish: Publish,
        *,
        service: Service | None = None,
        refresh: Refresh | None = None,
        executor: Executor | None = None,
        settings: LoopSettings = LoopSettings(),
        hooks: Sequence[Hook] = (),
        on_error: OnError | None = None,
    ) -> None:
        self.service = service
        self.publish = publish
        self.refresh = refresh
        self.executor = executor
        self.settings = settings
        self.hooks = list(hooks)
        self.on_error = on_error
        self._waiter: asyncio.Future[None] | None = None
        self._stepping = False
        self._woken_in_step = False
        self._checked_refs: float | None = None
        self._held_since: float | None = None
        """When a start-up status was first held back (publish_due), None: nothing held."""
        self.exits = ExitWaker(self.wake)

    def wake(self) -> None:
        """Cut the sleep short; a wake during a step makes the next sleep a short one, so
        a change that arrives while the step runs (a new spec) is not left for the next
        resync (a minute, for a watched workload without probes)."""
        if self._stepping:
            self._woken_in_step = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def check_references_now(self) -> None:
        """The inputs may have changed (files reloaded): compare them at the next step."""
        self._checked_refs = None

    async def run(self, running: Callable[[], bool]) -> None:
        try:
            while running():
                delay = await self.step()
                if not running():
                    return
                await self.sleep(delay)
        finally:
            self.exits.disarm()

    async def step(self) -> float:
        """One pass; returns the seconds until the next one is useful."""
        self._stepping = True
        try:
            return await self._step()
        finally:
            self._stepping = False

    async def _step(self) -> float:
        if self.refresh is not None:
            pause = await self.refresh(self)
            if pause is not None:
                return pause
        svc = self.service
        if svc is None:
            return self.settings.error_delay
        try:
            await self._check_references(svc)
            delay = await self._reconcile_publishing(svc)
            self.exits.reconciled()
        except Exception as exc:  # never let one service end its loop
            log.exception("reconcile of %s failed", svc.identity.key)
            if self.on_error is not None:
                self.on_error(svc, exc)
            delay = self.settings.error_delay
        for hook in self.hooks:
            try:
                await hook(svc)
            except Exception as exc:
                log.exception("hook of %s failed", svc.identity.key)
                if self.on_error is not None:
                    self.on_error(svc, exc)
        now = asyncio.get_running_loop().time()
        held = self._held_since
        if publish_due(
            svc.status.state,
            svc.status.last_state,
            delay,
            None if held is None else now - held,
            self.settings.progress_interval,
        ):
            self._held_since = None
            await self.publish(svc, None)
        elif held is None:
            self._held_since = now
        return delay

    async def sleep(self, delay: float) -> None:
        """One future and one timer: no task per sleep (a thousand loops sleep at once)."""
        if self._woken_in_step:
            self._woken_in_step = False
            delay = MIN_SLEEP
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        if self.service is not None:
            # After the waiter: an end during the step leaves the watch readable, so it wakes us.
            self.exits.arm(self.service.exit_watch)
        timer = loop.call_later(max(delay, MIN_SLEEP), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _check_references(self, svc: Service) -> None:
        if not svc.has_references:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        last = self._checked_refs
        if last is not None and now - last < self.settings.reference_check_seconds:
            return
        self._checked_refs = now
        if await loop.run_in_executor(self.executor, svc.references_changed):
            await loop.run_in_executor(
                self.executor, svc.replace, "a referenced Secret or ConfigMap changed"
            )

    async def _reconcile_publishing(self, svc: Service) -> float:
        """The reconcile, awaited in place; a timer publishes progress only if it runs long
        (a Terraform apply), so the usual millisecond step costs no task and no wait()."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        progress: list[asyncio.Task[None]] = []
        timer: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal timer
            if not progress or progress[-1].done():
                task = asyncio.ensure_future(self.publish(svc, loop.time() - started))
                task.add_done_callback(_retrieved)
                progress.append(task)
            timer = loop.call_later(self.settings.progress_interval, tick)

        timer = loop.call_later(self.settings.progress_interval, tick)
        try:
            return await svc.areconcile(self.executor)
        finally:
            timer.cancel()
            if progress and not progress[-1].done():
                await asyncio.gather(progress[-1], return_exceptions=True)
