"""One asyncio task that runs an object's ``run()`` loop until ``stop()`` cancels it."""

from __future__ import annotations

import abc
import asyncio
import contextlib


class BackgroundLoop(abc.ABC):
    """``start()`` runs ``run()`` as a task on the running event loop; ``stop()`` cancels it
    and waits for it to end (a no-op if it was never started)."""

    _task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run(self) -> None:
        """The loop; runs until cancelled."""

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
