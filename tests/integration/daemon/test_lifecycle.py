"""Daemon services end to end on real processes: start, health, adoption, stop."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from steward import Service, ServiceState
from steward.api.status import HealthState
from tests.support.manifests import manifest
from tests.support.processes import marked_processes

PY = sys.executable


def http_daemon(name: str = "web", **endpoint: Any) -> dict[str, Any]:
    ep = {"protocol": "http", "healthCheck": {"http": {"path": "/"}, "periodSeconds": 1}}
    ep.update(endpoint)
    return manifest(
        name,
        {
            "daemon": {"command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]},
            "endpoint": ep,
        },
    )


def test_http_daemon_reaches_active_and_healthy(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(http_daemon(), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    assert svc.is_running
    st = svc.status
    assert st.state is ServiceState.ACTIVE
    assert st.last_state is ServiceState.PENDING_STARTUP
    assert st.health.state is HealthState.HEALTHY
    assert st.endpoint.uri == f"http://127.0.0.1:{st.endpoint.port}"
    assert st.endpoint.health_url == f"http://127.0.0.1:{st.endpoint.port}/"
    assert requests.get(st.endpoint.uri, timeout=5).status_code == 200
    ready = st.condition("Ready")
    assert ready is not None and ready.status == "True" and ready.reason == "Ready"
    pid = st.runtime["pid"]
    assert svc.stop(timeout=10)
    assert svc.is_stopped
    assert not psutil.pid_exists(pid)


def test_second_service_object_adopts_without_duplicate(
    state_dir: Path, services: list[Service]
) -> None:
    first = Service.from_manifest(http_daemon(), state_dir=state_dir)
    services.append(first)
    assert first.start(timeout=20), first.status.last_error
    pid = first.status.runtime["pid"]
    before = {p.pid for p in marked_processes()}

    second = Service.from_manifest(http_daemon(), state_dir=state_dir)
    assert second.start(timeout=20)
    assert second.status.runtime["pid"] == pid
    assert second.status.endpoint.port == first.status.endpoint.port
    # Nothing new started (an earlier test's log hub may have ended meanwhile: compare sets).
    assert {p.pid for p in marked_processes()} - before == set()
    # the adopter can stop it
    assert second.stop(timeout=10)
    assert Service.from_manifest(http_daemon(), state_dir=state_dir).is_stopped


def test_from_json_round_trip(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(http_daemon(), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20)
    clone = Service.from_json(svc.to_json(), state_dir=state_dir)
    assert clone.manifest.spec == svc.manifest.spec
    assert clone.manifest.metadata == svc.manifest.metadata
    assert clone.status.endpoint.uri == svc.status.endpoint.uri
    assert clone.is_running
    assert clone.status.runtime["pid"] == svc.status.runtime["pid"]


def test_readiness_follows_first_successful_probe(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    # The server listens only after 0.5 s and notes when; start() must return right after
    # that moment, not on a 1-second polling grid (the seed's approach).
    listening = tmp_path / "listening-at"
    code = (
        "import sys,time,socket,http.server as h\n"
        "time.sleep(0.5)\n"
        "srv = h.HTTPServer(('127.0.0.1', int(sys.argv[1])), h.SimpleHTTPRequestHandler)\n"
        "open(sys.argv[2], 'w').write(repr(time.time()))\n"
        "srv.serve_forever()\n"
    )
    cmd = [PY, "-c", code, "$(PORT)", str(listening)]
    m = manifest(
        "slow",
        {
            "daemon": {"command": cmd},
            "endpoint": {"protocol": "http", "healthCheck": {"periodSeconds": 10}},
        },
    )
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    returned = time.time()
    lag = returned - float(listening.read_text())
    assert 0 <= lag < 0.35, lag


def test_tcp_endpoint_default_probe(state_dir: Path, services: list[Service]) -> None:
    cmd = [
        PY,
        "-c",
        "import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)",
        "$(PORT)",
    ]
    svc = Service.from_manifest(
        manifest("tcp", {"daemon": {"command": cmd}, "endpoint": {"protocol": "tcp"}}),
        state_dir=state_dir,
    )
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    assert svc.status.endpoint.uri == f"tcp://127.0.0.1:{svc.status.endpoint.port}"
    assert svc.status.endpoint.health_url is None


def test_no_endpoint_active_while_process_runs(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(
        manifest("sleeper", {"daemon": {"command": ["sleep", "600"]}}), state_dir=state_dir
    )
    services.append(svc)
    assert svc.start(timeout=10)
    assert svc.status.state is ServiceState.ACTIVE
    assert svc.status.endpoint.uri is None


def test_env_and_working_dir(state_dir: Path, tmp_path: Path, services: list[Service]) -> None:
    out = tmp_path / "out.txt"
    spec = {
        "daemon": {
            "command": [
                PY,
                "-c",
                "import os,sys; open(sys.argv[1],'w').write(os.environ['GREETING']+'|'+os.getcwd()); import time; time.sleep(600)",
                str(out),
            ],
            "env": [
                {"name": "WHO", "value": "world"},
                {"name": "GREETING", "value": "hello $(WHO) $$(WHO)"},
            ],
            "workingDir": str(tmp_path),
        }
    }
    svc = Service.from_manifest(manifest("env", spec), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=10)
    deadline = time.monotonic() + 10
    while not out.exists() or not out.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert out.read_text() == f"hello world $(WHO)|{tmp_path}"


def test_shell_metacharacters_arrive_literally(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    out = tmp_path / "argv.txt"
    evil = "; touch /tmp/steward-pwned && echo $HOME `id` | cat"
    spec = {
        "daemon": {
            "command": [
                PY,
                "-c",
                "import sys; open(sys.argv[1],'w').write(sys.argv[2])",
                str(out),
                evil,
            ]
        },
        "restartPolicy": "Never",
    }
    svc = Service.from_manifest(manifest("meta", spec), state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=10)
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert out.read_text() == evil
    assert not Path("/tmp/steward-pwned").exists()


def test_singleton_keeps_files_in_root(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(
        manifest("single", {"daemon": {"command": ["sleep", "600"], "singleton": True}}),
        state_dir=state_dir,
    )
    services.append(svc)
    assert svc.start(timeout=10)
    assert (state_dir / "daemon.pid").exists()
