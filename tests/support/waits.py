"""Polling until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    pred: Callable[[], Any], timeout: float = 60, step: float = 0.2, what: str = ""
) -> Any:
    """Poll ``pred()`` every ``step`` seconds until truthy; return its value.

    Raises AssertionError after ``timeout`` seconds, naming ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what or 'condition'} within {timeout}s (last: {last!r})"
            )
        time.sleep(step)


def wait_fast(pred: Callable[[], Any], timeout: float = 15, step: float = 0.05) -> Any:
    """wait_for with the in-process suites' defaults: 15 s, polled every 50 ms."""
    return wait_for(pred, timeout, step)
