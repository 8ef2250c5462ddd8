"""Fair scheduling: a long Terraform apply never delays daemon reconciles (separate pools
per flavor), and one namespace's slow applies or stubborn stops never hold back another's
(per-namespace caps, and a separate lane for stops)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.kubectl import Runner, apply, delete_all_msvc, get, patch, wait_ready
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.namespaces import fresh_namespace, namespace_name
from tests.support.operator import Operator
from tests.support.ports import free_port
from tests.support.waits import wait_for

SLOW = """
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep 25.5"
  }
}
output "done" { value = "yes" }
"""


def test_daemon_ready_while_terraform_applies(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    apply(
        kubectl,
        namespace,
        msvc(
            "slow-infra",
            {"terraform": {"module": {"inline": {"main.tf": SLOW}}, "binary": "bundled"}},
        ),
    )
    wait_for(
        lambda: (
            (get(kubectl, namespace, "slow-infra").get("status") or {}).get("state")
            == "pending_startup"
        ),
        timeout=60,
    )
    t0 = time.monotonic()
    apply(kubectl, namespace, msvc("web", http_daemon_spec()))
    wait_ready(kubectl, namespace, "web", timeout=60)
    elapsed = time.monotonic() - t0
    print(f"daemon Ready {elapsed:.2f}s after apply while a 25 s Terraform apply runs")
    assert elapsed < 10, elapsed
    assert get(kubectl, namespace, "slow-infra")["status"]["state"] == "pending_startup"


# ---------------------------------------------------------------- fairness between namespaces
SLOW_APPLY_SECONDS = 45
GRACE_SECONDS = 25
QUICK = 'output "done" { value = "yes" }\n'
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


@dataclass
class Tenants:
    """One operator watching two namespaces, each pool two workers (one per namespace)."""

    operator: Operator
    a: str
    b: str


@pytest.fixture
def tenants(  # type: ignore[no-untyped-def]
    control_plane, crd_installed, namespace, kubectl, tmp_path: Path
) -> Iterator[Tenants]:
    with fresh_namespace(kubectl, namespace_name("fair-b")) as other:
        op = Operator(
            control_plane,
            namespace,
            tmp_path / "operator-state",
            tmp_path / "operator.log",
            metrics_port=free_port(),
            extra_args=("-n", other, "--daemon-workers", "2", "--terraform-workers", "2"),
        )
        op.start()
        try:
            yield Tenants(op, namespace, other)
            for ns in (namespace, other):
                delete_all_msvc(kubectl, ns, timeout=180)
        finally:
            op.stop()
            print(op.logs()[-4000:])


def _state(kubectl: Runner, namespace: str, name: str) -> str | None:
    found = kubectl("get", "msvc", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None  # gone (its finalizer finished)
    return ((json.loads(found.stdout).get("status") or {}).get("state")) or ""


def test_one_namespaces_slow_applies_do_not_hold_back_anothers(tenants, kubectl) -> None:  # type: ignore[no-untyped-def]
    """A submits more slow applies than the Terraform pool has workers; B's apply still
    runs at once, and is Ready before any of A's has finished."""
    a, b = tenants.a, tenants.b
    slow = SLOW.replace("sleep 25.5", f"sleep {SLOW_APPLY_SECONDS}")
    names = [f"slow-{i}" for i in range(3)]
    for name in names:
        tf = {"module": {"inline": {"main.tf": slow}}, "binary": "bundled"}
        apply(kubectl, a, msvc(name, {"terraform": tf}))
    wait_for(
        lambda: any(_state(kubectl, a, n) == "pending_startup" for n in names),
        timeout=90,
        what="one of A's applies running",
    )
    time.sleep(3)  # without a cap, A's second apply would take the other worker now
    t0 = time.monotonic()
    apply(
        kubectl,
        b,
        msvc(
            "quick", {"terraform": {"module": {"inline": {"main.tf": QUICK}}, "binary": "bundled"}}
        ),
    )
    wait_ready(kubectl, b, "quick", timeout=120)
    elapsed = time.monotonic() - t0
    states = {n: _state(kubectl, a, n) for n in names}
    print(f"B's apply Ready {elapsed:.2f}s after it was created; A's: {states}")
    assert "active" not in states.values(), states  # B overtook every one of A's applies
    assert list(states.values()).count("pending_startup") == 1, states  # A holds its cap only


def test_stubborn_stops_in_one_namespace_do_not_delay_anothers_start(tenants, kubectl) -> None:  # type: ignore[no-untyped-def]
    """Daemons in A that ignore SIGTERM sit out their grace period while stopping (two by
    adminState inactive, one by deletion): more stops than the daemon pool has workers.
    B's daemon, and a new one in A, start and are Ready before any of those stops has
    finished."""
    a, b = tenants.a, tenants.b
    names = [f"stubborn-{i}" for i in range(3)]
    spec = {
        "daemon": {
            "command": [sys.executable, "-c", IGNORES_SIGTERM],
            "stopGracePeriodSeconds": GRACE_SECONDS,
        }
    }
    for name in names:
        apply(kubectl, a, msvc(name, spec))
    for name in names:
        wait_ready(kubectl, a, name, timeout=90)
    for name in names[:2]:
        patch(kubectl, a, name, {"spec": {"adminState": "inactive"}})
    kubectl("delete", "msvc", names[2], "-n", a, "--wait=false")
    wait_for(
        lambda: any(_state(kubectl, a, n) == "pending_shutdown" for n in names),
        timeout=60,
        what="one of A's stops under way",
    )
    t0 = time.monotonic()
    apply(kubectl, b, msvc("web", http_daemon_spec()))
    apply(kubectl, a, msvc("web", http_daemon_spec()))
    wait_ready(kubectl, b, "web", timeout=90)
    elapsed_b = time.monotonic() - t0
    # A's own reconciles go on too: its stops wait in the stop lane, not in its reconcile cap.
    wait_ready(kubectl, a, "web", timeout=90)
    elapsed_a = time.monotonic() - t0
    states = {n: _state(kubectl, a, n) for n in names}
    print(f"daemons Ready {elapsed_b:.2f}s (B), {elapsed_a:.2f}s (A) after creation; A's: {states}")
    # No stop had finished: the patched ones are not yet inactive, the deleted one exists.
    assert all(s not in ("inactive", None) for s in states.values()), states
    # And every stop does finish (SIGKILL after the grace period), one after another.
    wait_for(
        lambda: [_state(kubectl, a, n) for n in names] == ["inactive", "inactive", None],
        timeout=3 * GRACE_SECONDS + 90,
        what="A's stops finished",
    )
