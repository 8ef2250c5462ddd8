"""Sandbox tests run real processes as real uids in real cgroups: root and cgroup v1 here.

Under CI a missing requirement is a failure, never a skip (the v2 tests alone may skip:
this kind of machine has no v2 hierarchy with the controllers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.api.daemon import DaemonSpec
from steward.runtimes.base import RuntimeContext, ServiceIdentity
from steward.runtimes.daemon.runtime import DaemonRuntime
from steward.runtimes.sandbox import Limits, Sandbox, UidAllocator
from steward.runtimes.sandbox.cgroups import Cgroup, CgroupUnavailable
from tests.support.processes import TEST_CGROUP_PARENT, TEST_UID_SIZE, TEST_UID_START
from tests.support.runtimes import force_stop
from tests.support.sandbox import PY, Factory


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "sandbox tests need root (setuid, cgroups)"
    if not os.access(PY, os.X_OK):
        return f"{PY} is needed (an interpreter outside /root)"
    try:
        cg = Cgroup.plan(TEST_CGROUP_PARENT, "probe")
    except CgroupUnavailable as exc:
        return f"no usable cgroups: {exc}"
    if cg.version != 1:
        return "not a cgroup v1 machine (the v1 tests run where v1 is)"
    return None


@pytest.fixture(autouse=True)
def _requirements() -> None:
    why = _missing()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def cgroup_parents() -> list[Path]:
    """Every directory under the test cgroup parent, in every controller."""
    try:
        parents = Cgroup.plan(TEST_CGROUP_PARENT, "").dirs.values()
    except CgroupUnavailable:
        return []
    return [p for p in parents if p.exists()]


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A state dir the sandbox uids can traverse to (pytest's tmp_path is under 0700 dirs)."""
    root = Path(tempfile.mkdtemp(prefix="steward-sandbox-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    yield state
    shutil.rmtree(root, ignore_errors=True)
    leftovers = [c for d in cgroup_parents() for c in d.iterdir() if c.is_dir()]
    for d in [*leftovers, *cgroup_parents()]:
        d.rmdir()  # the parent is the fixture's to remove; a service cgroup left is a bug
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture
def allocator(sandbox_root: Path) -> UidAllocator:
    return UidAllocator(TEST_UID_START, TEST_UID_SIZE, sandbox_root / "uids")


@pytest.fixture
def daemon(sandbox_root: Path, allocator: UidAllocator) -> Iterator[Factory]:
    """``daemon(name, spec_dict, limits=..., **sandbox_fields)``: a sandboxed DaemonRuntime,
    stopped (and its cgroup checked gone) after the test."""
    made: list[DaemonRuntime] = []

    def make(
        name: str,
        spec: dict[str, Any],
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        secrets: frozenset[str] = frozenset(),
        **fields: Any,
    ) -> DaemonRuntime:
        identity = ServiceIdentity("team", name)
        uid = allocator.allocate(identity.key)
        sandbox = Sandbox(
            uid=uid,
            gid=uid,
            limits=limits or Limits(),
            state_root=sandbox_root,
            **{"cgroup_parent": TEST_CGROUP_PARENT, **fields},
        )
        ctx = RuntimeContext(
            identity=identity,
            runtime_dir=sandbox_root / "services" / "team" / name / "runtime",
            env=dict(env or {}),
            secret_values=secrets,
            sandbox=sandbox,
        )
        rt = DaemonRuntime(DaemonSpec.model_validate(spec), ctx)
        made.append(rt)
        return rt

    yield make
    force_stop(made, close=False)
