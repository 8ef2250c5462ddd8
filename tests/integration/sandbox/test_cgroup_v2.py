"""cgroup v2 (unified): only where a v2 hierarchy with memory, pids and cpu is in use.

This kind of machine is v1 (hybrid: the unified mount has no controllers), so these skip
here, with the reason, even under CI; the v1 tests beside them never skip under CI.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from steward.runtimes.sandbox import Limits
from steward.runtimes.sandbox.cgroups import Cgroup, CgroupUnavailable
from tests.support.processes import TEST_CGROUP_PARENT


def _v2() -> Cgroup | None:
    try:
        cg = Cgroup.plan(TEST_CGROUP_PARENT, "v2-probe")
    except CgroupUnavailable:
        return None
    return cg if cg.version == 2 else None


@pytest.fixture(autouse=True)
def _requirements() -> None:  # overrides the v1 requirement of conftest.py
    if os.geteuid() != 0:
        pytest.skip("cgroup v2 tests need root")
    if _v2() is None:
        pytest.skip("no cgroup v2 hierarchy with memory, pids and cpu here (a v1 machine)")


def test_v2_limits_kill_and_oom() -> None:
    cg = _v2()
    assert cg is not None
    try:
        cg.create(Limits(memory_bytes=32 << 20, pids=16, cpu_millicores=500))
        d = cg.dirs["unified"]
        assert (d / "memory.max").read_text().strip() == str(32 << 20)
        assert (d / "pids.max").read_text().strip() == "16"
        assert (d / "cpu.max").read_text().split() == ["50000", "100000"]
        hog = subprocess.Popen(
            ["python3", "-c", "x = []\nwhile True: x.append(bytearray(1 << 20))"],
            stdin=subprocess.DEVNULL,
        )
        cg.add(hog.pid)
        assert hog.wait(60) == -9
        assert cg.oom_kills() >= 1
        sleeper = subprocess.Popen(["sleep", "300"])
        cg.add(sleeper.pid)
        assert cg.kill(timeout=5)
        sleeper.wait(5)
        time.sleep(0.05)
    finally:
        cg.kill(timeout=5)
        assert cg.remove()
        parent = cg.dirs["unified"].parent
        if parent.exists():
            parent.rmdir()
