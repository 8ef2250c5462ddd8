"""The `kubernetes` state backend on a real kube-apiserver: state in a Secret, lock in a Lease.

A run killed mid-apply leaves its Lease behind (the classic stuck object of
tofu-controller users); the next run proves the holder dead and unlocks it. On another
host (an empty state directory) only the agent's proof that the old host was fenced
before its binding began lets it break the lock.

The control plane comes from $STEWARD_TESTBIN or the testbin cache that
``hack/testenv/build-testbin.sh`` fills; without either this module is
skipped (under CI the build runs, and a failure fails).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from steward.api.state import ServiceState
from steward.runtimes.base import FencedHolders, RuntimeFailure
from tests.support.env import in_ci
from tests.support.terraform import SLOW, Background, MakeRT, sleeps, spec_of, wait_for

TESTENV = Path(__file__).resolve().parents[3] / "hack" / "testenv"


def _testbin() -> Path | None:
    if os.environ.get("STEWARD_TESTBIN"):
        return Path(os.environ["STEWARD_TESTBIN"])
    cache = Path(os.environ.get("STEWARD_CACHE", Path.home() / ".cache" / "steward")) / "testbin"
    complete = sorted(cache.glob("*/.complete"), key=lambda p: p.stat().st_mtime)
    return complete[-1].parent if complete else None


@pytest.fixture(scope="module")
def kube() -> Iterator[Any]:
    from hack.testenv import controlplane

    bin_dir = _testbin()
    try:
        if bin_dir is None:
            if not in_ci():
                pytest.skip(
                    "no control plane binaries: set STEWARD_TESTBIN or run hack/testenv/build-testbin.sh"
                )
            bin_dir = controlplane.build_testbin()
        cp = controlplane.ControlPlane(bin_dir)
        info = cp.start()
    except controlplane.ControlPlaneError as exc:
        if in_ci():
            pytest.fail(f"Kubernetes control plane unavailable: {exc}", pytrace=False)
        pytest.skip(f"Kubernetes control plane unavailable: {exc}")
    try:
        yield info
    finally:
        cp.stop()


def kubectl(kube: Any, *args: str) -> str:
    out = subprocess.run(
        [str(kube.bin_dir / "kubectl"), "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return out.stdout + out.stderr


def k8s_backend(kube: Any, suffix: str) -> dict[str, Any]:
    return {
        "kubernetes": {
            "secretSuffix": suffix,
            "namespace": "default",
            "configPath": str(kube.kubeconfig),
        }
    }


@pytest.mark.timeout(600)
def test_state_in_a_secret_and_stale_lease_unlocked(
    tmp_path: Path, kube: Any, make_rt: MakeRT
) -> None:
    rd = tmp_path / "rt"
    rt = make_rt(
        spec_of(SLOW, vars={"seconds": 67.25}, backend=k8s_backend(kube, "t1.tf1")), runtime_dir=rd
    )
    bg = Background(rt)
    wait_for(lambda: sleeps("67.25"), "the provisioner's sleep", 60)
    assert "lock-tfstate-default-t1.tf1" in kubectl(kube, "get", "leases", "-n", "default")
    running = rt.runner.running
    assert running is not None
    os.kill(running.pid, signal.SIGKILL)
    err = bg.join(60)
    assert isinstance(err, RuntimeFailure) and err.reason == "TerraformKilled"
    lease = kubectl(
        kube,
        "get",
        "lease",
        "lock-tfstate-default-t1.tf1",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    )
    assert lease.strip(), "the killed run's Lease should still hold the lock"

    again = make_rt(
        spec_of(SLOW, vars={"seconds": 0}, backend=k8s_backend(kube, "t1.tf1")), runtime_dir=rd
    )
    again.start()
    obs = again.observe()
    assert obs.state is ServiceState.ACTIVE, obs.message
    assert obs.details["backend"] == "kubernetes"
    log = "\n".join(again.logs())
    assert f"state lock {lease.strip()} belongs to terraform apply" in log
    assert "tfstate-default-t1.tf1" in kubectl(kube, "get", "secrets", "-n", "default")

    again.stop()
    assert again.observe().state is ServiceState.INACTIVE
    assert "Destroy complete!" in "\n".join(again.logs(tail=30))


@pytest.mark.timeout(600)
def test_a_lease_left_on_a_fenced_host_is_broken_only_by_the_host_bound_after_it(
    tmp_path: Path, kube: Any, make_rt: MakeRT
) -> None:
    """Failover: the run on the old host was killed by its fence holding the Lease; the new
    host has no record of it. Only the proof its agent hands over (that host, fenced before
    this binding began) lets it force-unlock; without it, for another host, or for a lock
    taken after the binding, the lock stays and the status says who holds it."""
    backend = k8s_backend(kube, "t1.fenced")
    old = make_rt(spec_of(SLOW, vars={"seconds": 66.75}, backend=backend),
                  runtime_dir=tmp_path / "old")  # fmt: skip
    bg = Background(old)
    wait_for(lambda: sleeps("66.75"), "the provisioner's sleep", 60)
    running = old.runner.running
    assert running is not None
    os.kill(running.pid, signal.SIGKILL)  # what the old host's fence does to it
    assert isinstance(bg.join(60), RuntimeFailure)
    lease = kubectl(kube, "get", "lease", "lock-tfstate-default-t1.fenced", "-n", "default",
                    "-o", "jsonpath={.spec.holderIdentity}").strip()  # fmt: skip
    assert lease, "the killed run's Lease should still hold the lock"
    host = socket.gethostname()  # the old host ran here: its lock says user@this-host
    after = datetime.now(UTC) + timedelta(seconds=6)  # the binding here, after the fence

    refused = {
        "no proof": None,
        "another host fenced": FencedHolders(frozenset({"elsewhere"}), after),
        "bound before the lock": FencedHolders(frozenset({host}), after - timedelta(minutes=5)),
    }
    for i, (case, fenced) in enumerate(refused.items()):
        new = make_rt(spec_of(SLOW, vars={"seconds": 0}, backend=backend),
                      runtime_dir=tmp_path / f"n{i}", fenced=fenced)  # fmt: skip
        with pytest.raises(RuntimeFailure) as info:
            new.start()
        assert info.value.reason == "TerraformStateLocked", (case, info.value)
        assert "not breaking it" in "\n".join(new.logs()), case
        still = kubectl(kube, "get", "lease", "lock-tfstate-default-t1.fenced", "-n", "default",
                        "-o", "jsonpath={.spec.holderIdentity}").strip()  # fmt: skip
        assert still == lease, case

    new = make_rt(spec_of(SLOW, vars={"seconds": 0}, backend=backend),
                  runtime_dir=tmp_path / "new", fenced=FencedHolders(frozenset({host}), after))  # fmt: skip
    new.start()
    obs = new.observe()
    assert obs.state is ServiceState.ACTIVE, obs.message
    log = "\n".join(new.logs())
    assert f"state lock {lease} was taken by" in log
    assert "on a host fenced before this host's binding began: force-unlock" in log
    new.stop()
    assert new.observe().state is ServiceState.INACTIVE
