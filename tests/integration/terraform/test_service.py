"""The engine's Service contract with a Terraform ManagedService: status, endpoint, probes, logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steward import Service, ServiceState
from steward.api.status import HealthState
from steward.runtimes.base import NoPreviousRun
from tests.support.services import assert_start_fails
from tests.support.terraform import MARKER, WEB

ENDPOINT_MODULE = (
    MARKER
    + """
variable "url" { type = string }
output "url" { value = var.url }
output "password" {
  value     = "pw-of-the-service-4242"
  sensitive = true
}
"""
)


@pytest.fixture
def web_server() -> Iterator[str]:
    """Stands for what the module would create: something answering HTTP."""

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def manifest(terraform: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": "tf1", "namespace": "t1"},
        "spec": {"terraform": terraform, **spec},
    }


def test_service_applies_probes_the_output_endpoint_and_destroys(
    tmp_path: Path, web_server: str, services: list[Service]
) -> None:
    marker = tmp_path / "created"
    m = manifest(
        {
            "module": {"inline": {"main.tf": ENDPOINT_MODULE}},
            "vars": {"url": web_server, "marker": str(marker)},
            "endpointOutput": "url",
        },
        endpoint={"protocol": "http", "healthCheck": {"http": {"path": "/"}, "periodSeconds": 1}},
    )
    svc = Service.from_manifest(m, state_dir=tmp_path / "state")
    services.append(svc)
    assert svc.start(timeout=60), svc.status.last_error
    st = svc.status
    assert st.state is ServiceState.ACTIVE
    assert st.endpoint.uri == web_server
    assert st.health.state is HealthState.HEALTHY
    ready = st.condition("Ready")
    assert ready is not None and ready.status == "True"
    assert st.runtime["outputs"] == {"url": web_server}
    assert st.runtime["sensitiveOutputs"] == ["password"]
    assert st.runtime["initCount"] == 1
    assert marker.exists()
    assert "pw-of-the-service-4242" not in st.model_dump_json()
    assert any("Apply complete!" in line for line in svc.get_logs())
    with pytest.raises(NoPreviousRun, match="every command of every apply"):
        svc.get_logs(previous=True)  # one log across applies: said plainly, not an empty answer

    svc.reconcile()
    assert svc.status.state is ServiceState.ACTIVE

    # Another Service object (a restarted operator) adopts: no second apply.
    again = Service.from_manifest(m, state_dir=tmp_path / "state")
    assert again.is_running
    assert sum("terraform apply" in line for line in again.get_logs()) == 1

    assert svc.stop(timeout=30)
    assert svc.status.state.value == "inactive"
    assert not marker.exists()


def test_service_without_probe_is_ready_after_apply(
    tmp_path: Path, services: list[Service]
) -> None:
    m = manifest(
        {
            "module": {"inline": {"main.tf": WEB}},
            "vars": {"name": "n1", "marker": str(tmp_path / "m")},
            "endpointOutput": "url",
        }
    )
    svc = Service.from_manifest(m, state_dir=tmp_path / "state")
    services.append(svc)
    assert svc.start(timeout=60), svc.status.last_error
    assert svc.status.endpoint.uri == "http://127.0.0.1:9/n1"
    assert svc.status.state is ServiceState.ACTIVE


def test_service_reports_terraform_failure(tmp_path: Path, services: list[Service]) -> None:
    m = manifest({"module": {"inline": {"main.tf": 'variable "x" { type = string }\n'}}})
    svc = Service.from_manifest(m, state_dir=tmp_path / "state")
    services.append(svc)
    assert_start_fails(svc, "TerraformMissingVariable", 'input variable "x" is not set', timeout=30)
