"""Suite-wide fixtures and the leak check: nothing the tests start may outlive them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

# Every process the suite starts inherits this marker, so the leak check can
# find daemons (and their grandchildren) that were re-parented away from us.
SESSION_MARK = f"steward-test-{uuid.uuid4().hex[:12]}"
os.environ["STEWARD_TEST_SESSION"] = SESSION_MARK

# Sandboxed processes get a clean environment (no marker): the leak check also finds
# them by the cgroup parent the sandbox tests use and by the uid range they allocate from.
TEST_CGROUP_PARENT = SESSION_MARK
TEST_UID_START = 0x70F00000
TEST_UID_SIZE = 4096


def _sandboxed(p: psutil.Process) -> bool:
    if TEST_UID_START <= p.uids().real < TEST_UID_START + TEST_UID_SIZE:
        return True
    try:
        with open(f"/proc/{p.pid}/cgroup") as fh:
            return f"/{TEST_CGROUP_PARENT}/" in fh.read()
    except OSError:
        return False


def marked_processes() -> list[psutil.Process]:
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("STEWARD_TEST_SESSION") == SESSION_MARK or _sandboxed(p):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = marked_processes()
    if not leaked:
        return
    lines = []
    for p in leaked:
        try:
            lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
            p.kill()
        except psutil.NoSuchProcess:
            continue
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


def manifest(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


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
