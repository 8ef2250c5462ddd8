"""Suite-wide fixtures and the leak check: nothing the tests start may outlive them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import kill_leaked  # also sets the session marker in os.environ


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lines = kill_leaked()
    if lines:
        print(
            "\nLEAK CHECK FAILED: processes started by the tests are still alive:\n"
            + "\n".join(lines)
        )
        session.exitstatus = 1


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def services() -> Iterator[list[Any]]:
    """Services registered here are stopped (forcefully) after the test."""
    created: list[Any] = []
    yield created
    for svc in created:
        try:
            svc.stop(timeout=5, force=True)
        except Exception as exc:  # report, but keep stopping the others
            print(f"cleanup of {svc!r} failed: {exc}")
