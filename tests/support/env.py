"""What the environment asks of a test: CI turns a missing prerequisite into a failure."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> None:
    """A missing prerequisite: a failure under CI, a skip elsewhere (always raises)."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
