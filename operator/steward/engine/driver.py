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
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

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
        self._wake = asyncio.Event()
        self._checked_refs: float | None = None
        self.exits = ExitWaker(self.wake)

    def wake(self) -> None:
        self._wake.set()

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
        await self.publish(svc, None)
        return delay

    async def sleep(self, delay: float) -> None:
        self._wake.clear()
        if self.service is not None:
            # After the clear: an end during the step leaves the watch readable, so it wakes us.
            self.exits.arm(self.service.exit_watch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(delay, MIN_SLEEP))

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
        task = asyncio.ensure_future(svc.areconcile(self.executor))
        started = asyncio.get_running_loop().time()
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.settings.progress_interval)
            if done:
                return task.result()
            await self.publish(svc, asyncio.get_running_loop().time() - started)
