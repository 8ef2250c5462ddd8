"""Runtime bad input and faults: distinct reasons, Events, others unaffected; namespaces isolated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from tests.support.env import unavailable
from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.ports import taken_port
from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parents[3]


def ready_reason(kubectl, namespace: str, name: str) -> str | None:  # type: ignore[no-untyped-def]
    st = get(kubectl, namespace, name).get("status") or {}
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
    if ready.get("status") == "False" and st.get("lastError") and st.get("state") == "error":
        return str(ready.get("reason"))
    return None


def test_each_bad_input_has_its_own_reason_and_event(
    operator, kubectl, namespace, docker_images
) -> None:  # type: ignore[no-untyped-def]
    with taken_port() as taken:
        cases = {
            "no-binary": ({"daemon": {"command": ["steward-no-such-binary"]}}, "CommandNotFound"),
            "no-image": (
                {"container": {"image": "steward-test/absent:0", "imagePullPolicy": "Never"}},
                "ImageNotFound",
            ),
            "crasher": (
                {
                    "daemon": {"command": [sys.executable, "-c", "raise SystemExit(7)"]},
                    "restartPolicy": "Never",
                },
                "ProcessExited",
            ),
            "tf-syntax": (
                {
                    "terraform": {
                        "module": {"inline": {"main.tf": 'resource "terraform_data" "x" {'}}
                    }
                },
                "TerraformSyntaxError",
            ),
            "tf-missing-var": (
                {
                    "terraform": {
                        "module": {
                            "inline": {
                                "main.tf": 'variable "needed" { type = string }\noutput "x" { value = var.needed }'
                            }
                        }
                    }
                },
                "TerraformMissingVariable",
            ),
            "port-taken": (
                {
                    "daemon": {"command": ["sleep", "600"]},
                    "endpoint": {"port": taken, "allocatePort": False},
                },
                "PortUnavailable",
            ),
        }
        apply(kubectl, namespace, msvc("good", http_daemon_spec()))
        for name, (spec, _) in cases.items():
            apply(kubectl, namespace, msvc(name, spec))
        wait_ready(kubectl, namespace, "good")
        seen = {
            name: wait_for(lambda n=name: ready_reason(kubectl, namespace, n), timeout=120)
            for name in cases
        }
    print("BAD-INPUT", json.dumps(seen))
    assert seen == {name: reason for name, (_, reason) in cases.items()}
    assert len(set(seen.values())) == len(cases)
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    for name, reason in seen.items():
        assert any(
            e["involvedObject"]["name"] == name and e["type"] == "Warning" and e["reason"] == reason
            for e in events
        ), name
    assert get(kubectl, namespace, "good")["status"]["state"] == "active"


def test_same_names_in_two_namespaces_never_collide(
    operator, kubectl, namespace, docker_images, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    other = f"{namespace}-b"
    kubectl("create", "namespace", other)
    second = type(operator)(
        operator.control_plane, other, tmp_path / "state-b", tmp_path / "operator-b.log"
    )
    second.start()
    try:
        specs = {
            "svc-d": http_daemon_spec(),
            "svc-c": {
                "container": {
                    "image": docker_images.busybox,
                    "imagePullPolicy": "Never",
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                    "containerPort": 8080,
                },
                "endpoint": {"protocol": "http"},
            },
            "svc-t": {
                "terraform": {
                    "module": {"inline": {"main.tf": 'output "x" { value = "y" }'}},
                    "backend": {"kubernetes": {}},
                }
            },
        }
        for ns in (namespace, other):
            for name, spec in specs.items():
                apply(kubectl, ns, msvc(name, spec))
        for ns in (namespace, other):
            for name in specs:
                wait_ready(kubectl, ns, name, timeout=120)
        a = {n: get(kubectl, namespace, n)["status"] for n in specs}
        b = {n: get(kubectl, other, n)["status"] for n in specs}
        assert a["svc-d"]["runtime"]["pid"] != b["svc-d"]["runtime"]["pid"]
        assert a["svc-d"]["endpoint"]["port"] != b["svc-d"]["endpoint"]["port"]
        assert a["svc-c"]["runtime"]["containerId"] != b["svc-c"]["runtime"]["containerId"]
        client = docker.from_env()
        names = sorted(
            c.name
            for c in client.containers.list(filters={"label": "steward.dev/managed=true"})
            if c.labels["steward.dev/service"] in (f"{namespace}/svc-c", f"{other}/svc-c")
        )
        client.close()
        assert names == sorted([f"steward-{namespace}.svc-c", f"steward-{other}.svc-c"])

        def state_secrets(ns: str) -> list[str]:
            items = json.loads(kubectl("get", "secrets", "-n", ns, "-o", "json").stdout)["items"]
            return [
                s["metadata"]["name"] for s in items if s["metadata"]["name"].startswith("tfstate-")
            ]

        assert len(state_secrets(namespace)) == 1 and len(state_secrets(other)) == 1
        # deleting one leaves its twin running
        kubectl("delete", "msvc", "--all", "-n", other, "--timeout=120s", timeout=180)
        assert get(kubectl, namespace, "svc-d")["status"]["state"] == "active"
        os.kill(a["svc-d"]["runtime"]["pid"], 0)
    finally:
        kubectl("delete", "msvc", "--all", "-n", other, "--timeout=120s", check=False, timeout=180)
        second.stop()
        kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_docker_engine_restart_is_observed_and_recovered(
    operator, kubectl, namespace, docker_images
) -> None:  # type: ignore[no-untyped-def]
    spec = {
        "container": {
            "image": docker_images.busybox,
            "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "containerPort": 8080,
        },
        "endpoint": {"protocol": "http", "healthCheck": {"periodSeconds": 1}},
        "backoff": {"initialSeconds": 1},
    }
    apply(kubectl, namespace, msvc("survivor", spec))
    before = wait_ready(kubectl, namespace, "survivor")["status"]
    pidfile = Path(os.environ.get("STEWARD_CACHE", Path.home() / ".cache/steward")) / "dockerd.pid"
    if not pidfile.is_file():  # restart only an engine the harness started, by its pid
        unavailable(
            f"no {pidfile}: the running Docker engine was not started by "
            "hack/docker/ensure-dockerd.sh with this STEWARD_CACHE, and this test restarts "
            "only an engine it started"
        )
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    t0 = time.monotonic()
    wait_for(
        lambda: (get(kubectl, namespace, "survivor").get("status") or {}).get("state") != "active",
        timeout=60,
    )
    noticed = time.monotonic() - t0
    subprocess.run(
        ["bash", str(REPO / "hack/docker/ensure-dockerd.sh")],
        check=True,
        timeout=180,
        capture_output=True,
    )
    after = wait_for(
        lambda: (
            (s := get(kubectl, namespace, "survivor")["status"])["state"] == "active"
            and s["health"]["state"] == "healthy"
            and s
        ),
        timeout=120,
    )
    print(
        f"DOCKER-RESTART noticed {noticed:.1f}s after dockerd stopped; restarts={after['restarts']}"
    )
    assert after["restarts"] >= 1
    assert (
        after["runtime"]["containerId"] != before["runtime"]["containerId"]
        or after["restarts"] >= 1
    )
