"""Control-plane faults: kube-apiserver restarted, etcd stopped; watches recover, no update lost.

These tests get a control plane of their own (the faults would disturb the
shared one), with the real `steward run` operator against it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import http_daemon_spec, msvc
from tests.support.operator import Operator
from tests.support.paths import MS_CRD_FILE as CRD
from tests.support.waits import wait_for

RECOVERY_BUDGET = 10.0


@pytest.fixture
def private_plane(control_plane: Any, tmp_path: Path) -> Iterator[Any]:
    from hack.testenv import controlplane

    cp = controlplane.ControlPlane(control_plane.bin_dir)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def faulty(
    private_plane: Any, tmp_path: Path
) -> Iterator[tuple[Any, Operator, Callable[..., subprocess.CompletedProcess[str]]]]:
    info = private_plane.info
    env = info.env()

    def kubectl(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(info.bin_dir / "kubectl"), *args],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {args} failed: {res.stderr}")
        return res

    kubectl("apply", "--server-side", "-f", str(CRD))
    kubectl(
        "wait", "--for=condition=Established", "crd/managedservices.steward.dev", "--timeout=60s"
    )
    kubectl("create", "namespace", "faults")
    op = Operator(info, "faults", tmp_path / "state", tmp_path / "operator.log")
    op.start()
    try:
        yield private_plane, op, kubectl
    finally:
        if op.proc is not None and op.proc.poll() is None:
            kubectl(
                "delete", "msvc", "--all", "-n", "faults", "--timeout=90s", check=False, timeout=120
            )
        op.stop()
        print(op.logs()[-3000:])


def status(kubectl: Callable[..., Any], name: str) -> dict[str, Any]:
    res = kubectl("get", "msvc", name, "-n", "faults", "-o", "yaml", check=False)
    if res.returncode != 0:
        return {}
    obj = yaml.safe_load(res.stdout)
    return {"generation": obj["metadata"]["generation"], **(obj.get("status") or {})}


def ready_at_generation(kubectl: Callable[..., Any], name: str) -> bool:
    st = status(kubectl, name)
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
    return (
        bool(st)
        and st.get("observedGeneration") == st["generation"]
        and ready.get("status") == "True"
    )


def apply(kubectl: Callable[..., Any], name: str, spec: dict[str, Any]) -> None:
    kubectl("apply", "-n", "faults", "-f", "-", input=yaml.safe_dump(msvc(name, spec)))


def test_apiserver_restart_and_etcd_outage_lose_no_update(faulty) -> None:  # type: ignore[no-untyped-def]
    cp, op, kubectl = faulty
    apply(kubectl, "a", http_daemon_spec())
    wait_for(lambda: ready_at_generation(kubectl, "a"), timeout=60)

    # 1. kube-apiserver restarted: the operator's watch must come back by itself.
    cp.restart_component("kube-apiserver", downtime=2)
    t0 = time.monotonic()
    apply(kubectl, "a", http_daemon_spec(["--directory", "/"]))  # an update right after
    apply(kubectl, "b", http_daemon_spec())  # and a new object
    wait_for(
        lambda: ready_at_generation(kubectl, "a") and ready_at_generation(kubectl, "b"), timeout=60
    )
    after_apiserver = time.monotonic() - t0

    # 2. etcd stopped for 5 s: requests fail meanwhile; nothing is lost afterwards.
    cp.stop_component("etcd")
    time.sleep(5)
    cp.start_component("etcd")
    t1 = time.monotonic()
    apply(kubectl, "c", http_daemon_spec())
    apply(kubectl, "b", {**http_daemon_spec(), "adminState": "inactive"})
    wait_for(
        lambda: (
            ready_at_generation(kubectl, "c")
            and status(kubectl, "b").get("state") == "inactive"
            and status(kubectl, "b").get("observedGeneration") == status(kubectl, "b")["generation"]
        ),
        timeout=60,
    )
    after_etcd = time.monotonic() - t1
    print(
        f"FAULTS recovery after apiserver restart {after_apiserver:.1f}s, after etcd outage {after_etcd:.1f}s"
    )
    assert after_apiserver <= RECOVERY_BUDGET, after_apiserver
    assert after_etcd <= RECOVERY_BUDGET, after_etcd
    assert op.proc is not None and op.proc.poll() is None, "the operator must survive the outage"
    assert ready_at_generation(kubectl, "a")
