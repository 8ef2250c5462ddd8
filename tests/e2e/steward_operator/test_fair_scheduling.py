"""A long Terraform apply never delays daemon reconciles (separate worker pools)."""

from __future__ import annotations

import time

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import http_daemon_spec, msvc
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
