"""Runtime calls the control loop makes that must never raise.

A runtime that breaks (a Docker engine gone, a state file half written) shows in the
status as an error observation; it never takes the loop, or the other services it
serves, down with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from steward.api import reasons as R
from steward.api.state import ServiceState
from steward.runtimes.base import Observation, Runtime, RuntimeFailure
from steward.runtimes.exits import ExitWatch

T = TypeVar("T")


def observe(runtime: Runtime) -> Observation:
    """What runs now; a failure to look is an ERROR observation with its reason."""
    try:
        return runtime.observe()
    except RuntimeFailure as exc:
        return Observation(state=ServiceState.ERROR, message=str(exc), reason=exc.reason)
    except Exception as exc:
        return Observation(
            state=ServiceState.ERROR,
            message=f"{type(exc).__name__}: {exc}",
            reason=R.OBSERVE_FAILED,
        )


def _or_none(call: Callable[[], T] | None) -> T | None:
    """``call()``, or None when there is nothing to call or it raises."""
    if call is None:
        return None
    try:
        return call()
    except Exception:
        return None


def observe_cached(runtime: Runtime | None) -> Observation | None:
    """The runtime's answer from memory (no I/O, fine on the event loop), if it has one."""
    return _or_none(runtime.observe_cached if runtime is not None else None)


def exit_watch(runtime: Runtime | None) -> ExitWatch | None:
    """A new watch on the end of what runs now (the caller closes it), or None."""
    return _or_none(runtime.exit_watch if runtime is not None else None)


def watches_exit(runtime: Runtime | None) -> bool:
    """The runtime's end wakes the loop by itself (a pidfd, Docker's events stream)."""
    return bool(_or_none(runtime.watches_exit if runtime is not None else None))
