"""What the multi-host e2e modules read of the cluster and of this machine's processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

import kubernetes
import psutil

from tests.support.kubectl import Runner
from tests.support.waits import wait_for

GROUP, VERSION = "steward.dev", "v1alpha1"


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """One condition of an object's status ({} when absent)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_nodes_ready(custom: Any, nodes: Sequence[str], timeout: float = 60) -> None:
    """Until every StewardNode in ``nodes`` exists and is Ready=True."""

    def registered() -> bool:
        for node in nodes:
            try:
                obj = custom.get_cluster_custom_object(GROUP, VERSION, "stewardnodes", node)
            except kubernetes.client.ApiException:
                return False
            if condition(obj, "Ready").get("status") != "True":
                return False
        return True

    wait_for(registered, timeout=timeout, what=f"StewardNodes {', '.join(nodes)} Ready")


def continue_stopped(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGCONT every process still running (a SIGSTOPped agent cannot stop anything)."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)


def forget_hosts(
    kubectl: Runner, nodes: Iterable[str], lease_namespace: str = "kube-node-lease"
) -> None:
    """Delete the StewardNodes and the agents' Leases (``steward-NODE``) a module made."""
    for node in nodes:
        kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
        kubectl("delete", "lease", f"steward-{node}", "-n", lease_namespace,
                "--ignore-not-found", check=False)  # fmt: skip
