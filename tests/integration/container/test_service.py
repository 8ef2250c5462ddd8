"""Container services through the engine (``Service.from_manifest``), as a user drives them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from steward import Service, ServiceState
from steward.api.status import HealthState
from steward.runtimes.base import NoPreviousRun
from tests.support.containers import (
    APPS,
    Images,
    busybox_httpd,
    busybox_sh,
    container_manifest,
    session_containers,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.docker

HTTP = {"protocol": "http", "healthCheck": {"http": {"path": "/"}, "periodSeconds": 1}}
FAST_BACKOFF = {"initialSeconds": 0.2, "maxSeconds": 0.4}


def web(images: Images, name: str, **container: Any) -> dict[str, Any]:
    return container_manifest(name, busybox_httpd(images, **container), HTTP)


def crash_looping(
    images: Images, state_dir: Path, services: list[Service], prefix: str, script: str
) -> Service:
    """``sh -c SCRIPT`` in busybox, restarted Always after a short back-off; started."""
    m = busybox_sh(images, prefix, script, restartPolicy="Always", backoff=FAST_BACKOFF)
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    svc.start(timeout=5)
    return svc


def containers_of(client: Any, svc: Service) -> list[Any]:
    key = svc.identity.key
    return [c for c in session_containers(client) if c.labels["steward.dev/service"] == key]


def test_http_service_healthy_through_published_port(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    svc = Service.from_manifest(web(docker_images, unique_name("web")), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=30), svc.status.last_error
    st = svc.status
    assert st.state is ServiceState.ACTIVE
    assert st.health.state is HealthState.HEALTHY
    assert st.endpoint.uri == f"http://127.0.0.1:{st.endpoint.port}"
    assert st.runtime["hostPort"] == st.endpoint.port
    assert requests.get(st.endpoint.uri, timeout=5).text.strip() == "steward-test ok"
    ready = st.condition("Ready")
    assert ready is not None and ready.status == "True"
    [c] = containers_of(docker_client, svc)
    assert c.id == st.runtime["containerId"]

    assert svc.stop(timeout=10)
    assert svc.is_stopped
    assert containers_of(docker_client, svc) == []


def test_crash_is_restarted_with_backoff(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    script = "echo up; sleep 0.4; exit 3"
    svc = crash_looping(docker_images, state_dir, services, "crash", script)
    seen: set[str] = set()
    delays: list[float] = []
    deadline = time.monotonic() + 30
    while svc.status.restarts < 3 and time.monotonic() < deadline:
        wait = svc.reconcile()
        if svc.status.runtime.get("containerId"):
            seen.add(svc.status.runtime["containerId"])
        if svc.status.condition("Ready").reason == "CrashLoopBackOff":  # type: ignore[union-attr]
            delays.append(wait)
        time.sleep(min(wait, 0.2))
    assert svc.status.restarts >= 3, svc.status
    assert svc.status.last_exit_code == 3
    assert len(seen) >= 3  # each restart is a fresh container, the old one replaced
    assert delays and max(delays) <= 0.45
    assert svc.stop(timeout=10)


def test_second_service_object_adopts_without_second_container(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    m = web(docker_images, unique_name("adopt"))
    first = Service.from_manifest(m, state_dir=state_dir)
    services.append(first)
    assert first.start(timeout=30), first.status.last_error
    cid = first.status.runtime["containerId"]

    second = Service.from_manifest(m, state_dir=state_dir)
    services.append(second)
    assert second.start(timeout=30), second.status.last_error
    assert second.status.runtime["containerId"] == cid
    assert second.status.endpoint.port == first.status.endpoint.port
    assert [c.id for c in containers_of(docker_client, second)] == [cid]
    assert second.stop(timeout=10)
    assert Service.from_manifest(m, state_dir=state_dir).is_stopped


def test_unchanged_spec_keeps_and_changed_spec_replaces(
    docker_images: Images, state_dir: Path, services: list[Service], docker_client: Any
) -> None:
    name = unique_name("upd")
    m = web(docker_images, name)
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=30), svc.status.last_error
    cid = svc.status.runtime["containerId"]

    assert svc.update(m) is False
    for _ in range(3):
        svc.reconcile()
    assert svc.status.runtime["containerId"] == cid
    # A new Service object with the same spec does not restart it either.
    again = Service.from_manifest(m, state_dir=state_dir)
    assert again.is_running and again.status.runtime["containerId"] == cid

    changed = web(docker_images, name, env=[{"name": "MODE", "value": "v2"}])
    assert svc.update(changed) is True
    wait_for(lambda: (svc.reconcile(), svc.status.state is ServiceState.ACTIVE)[1], 30, 0.1)
    new_id = svc.status.runtime["containerId"]
    assert new_id != cid
    [c] = containers_of(docker_client, svc)
    assert c.id == new_id and "MODE=v2" in c.attrs["Config"]["Env"]

    # A restarted Steward with yet another spec replaces it on adoption.
    third = web(docker_images, name, env=[{"name": "MODE", "value": "v3"}])
    replacer = Service.from_manifest(third, state_dir=state_dir)
    services.append(replacer)
    assert containers_of(docker_client, svc) == []
    assert replacer.start(timeout=30), replacer.status.last_error
    assert replacer.status.runtime["containerId"] not in (cid, new_id)


def test_stop_grace_then_kill_through_service(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    script = "trap '' TERM; while :; do sleep 0.2; done"
    m = busybox_sh(docker_images, "stubborn", script, {"stopGracePeriodSeconds": 1})
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=20), svc.status.last_error
    t0 = time.monotonic()
    assert svc.stop(timeout=30)
    assert 0.9 <= time.monotonic() - t0 < 6
    assert svc.status.state is ServiceState.INACTIVE


def test_python_callable_service(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    container = {
        "image": docker_images.python,
        "python": {"callable": "ctapp:serve", "kwargs": {"port": "$(PORT)", "greeting": "hey"}},
        "env": [{"name": "PYTHONPATH", "value": "/apps"}],
        "containerPort": 9000,
        "volumes": [{"hostPath": str(APPS), "mountPath": "/apps", "readOnly": True}],
    }
    svc = Service.from_manifest(
        container_manifest(unique_name("py"), container, HTTP), state_dir=state_dir
    )
    services.append(svc)
    assert svc.start(timeout=60), svc.status.last_error
    assert svc.status.health.state is HealthState.HEALTHY
    assert requests.get(svc.status.endpoint.uri or "", timeout=5).json()["greeting"] == "hey"
    assert any("serving hey on 9000" in line for line in svc.get_logs(tail=20))
    assert svc.stop(timeout=10)


def test_secret_values_are_redacted(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    secret = "s3cr3t-value-42"
    m = container_manifest(
        unique_name("secret"),
        {
            "image": docker_images.busybox,
            "command": ["run-$(TOKEN)"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}],
        },
    )
    svc = Service.from_manifest(m, state_dir=state_dir, resolver=lambda kind, ref: secret)
    services.append(svc)
    assert not svc.start(timeout=10)
    assert svc.status.state is ServiceState.ERROR
    assert "run-***" in svc.status.last_error
    assert secret not in svc.to_json()
    ready = svc.status.condition("Ready")
    assert ready is not None and ready.reason == "CommandNotFound"


def test_previous_logs_are_the_removed_containers(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    script = "echo run $(cat /proc/sys/kernel/random/uuid); sleep 0.6; exit 3"
    svc = crash_looping(docker_images, state_dir, services, "prev", script)
    with pytest.raises(NoPreviousRun):
        svc.get_logs(previous=True)  # raised at once, before any line is asked for
    wait_for(lambda: any(line.startswith("run ") for line in svc.get_logs()), timeout=15)
    [first] = [line for line in svc.get_logs() if line.startswith("run ")]

    def restarted() -> bool:
        svc.reconcile()
        return svc.status.restarts >= 1 and any(x.startswith("run ") for x in svc.get_logs())

    wait_for(restarted, timeout=30)
    assert list(svc.get_logs(previous=True)) == [first]
    [now] = [line for line in svc.get_logs() if line.startswith("run ")]
    assert now != first
    assert list(svc.get_logs(previous=True, tail=0)) == []
    assert svc.stop(timeout=10)
