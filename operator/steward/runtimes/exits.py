"""Watching for the end of what a runtime runs, so nothing has to poll for it.

A runtime hands out an :class:`ExitWatch` for the workload running now; it
fires once, when that workload ends. Two kinds exist:

* :class:`PidfdWatch`: a Linux pidfd, readable once the process has exited
  (child or not, so an adopted daemon too); an event loop waits on it with
  ``add_reader``, no thread needed.
* :class:`CallbackWatch`: a subscription to a source that calls back from its
  own thread (Docker's events stream, one per engine).

The caller owns the watch and closes it; nothing here knows of asyncio or
Kubernetes.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
from collections.abc import Callable

Notify = Callable[[], None]
Cancel = Callable[[], None]


class ExitWatch(abc.ABC):
    """Fires once when the workload it was made for ends."""

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable at the end; None: use :meth:`subscribe`."""
        return None

    def subscribe(self, notify: Notify) -> None:  # noqa: B027 - fd-based watches need none
        """Call ``notify`` (from any thread, at most once) when the workload ends."""

    @abc.abstractmethod
    def ended(self) -> bool:
        """True once the end has happened (never blocks)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the watch; idempotent. No notification comes after it."""


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid`` (close-on-exec); None when gone or the kernel has none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:  # ProcessLookupError, or ENOSYS on an old kernel
        return None
    return fd


def fd_readable(fd: int, timeout: float = 0.0) -> bool:
    """True when ``fd`` is readable (a pidfd: the process has exited), waiting up to
    ``timeout`` seconds for it: woken by the kernel, no polling loop."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


class PidfdWatch(ExitWatch):
    """A descriptor the watch owns (a pidfd): readable once the process has exited."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def fileno(self) -> int | None:
        return self._fd

    def ended(self) -> bool:
        return self._fd is None or fd_readable(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class CallbackWatch(ExitWatch):
    """A subscription: ``register(notify)`` returns the function that cancels it."""

    def __init__(self, register: Callable[[Notify], Cancel], ended: Callable[[], bool]) -> None:
        self._register = register
        self._ended = ended
        self._cancel: Cancel | None = None
        self._closed = False

    def subscribe(self, notify: Notify) -> None:
        if self._closed or self._cancel is not None:
            return
        self._cancel = self._register(notify)

    def ended(self) -> bool:
        return self._ended()

    def close(self) -> None:
        self._closed = True
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()
