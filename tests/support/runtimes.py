"""Cleaning up the runtimes a test made (fixtures' teardown)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def force_stop(made: Iterable[Any], close: bool = True) -> None:
    """``rt.stop(force=True)`` (then ``rt.close()``) each; a failure is printed, the rest go on.

    The leak checks have the last word on anything left behind.
    """
    for rt in made:
        try:
            rt.stop(force=True)
        except Exception as exc:  # keep cleaning the others
            print(f"cleanup of {rt.ctx.identity.key} ({rt.ctx.runtime_dir}) failed: {exc}")
        if close:
            rt.close()
