"""Every way a container start can fail: a distinct reason, a readable message, no crash."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from steward import Service, ServiceState
from steward.api.container import ContainerSpec, VolumeMount
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.container import ContainerRuntime
from tests.support.containers import (
    SESSION,
    TEST_LABEL,
    Images,
    container_manifest,
    session_containers,
    unique_name,
)
from tests.support.ports import free_port, taken_port
from tests.support.services import assert_start_fails

pytestmark = pytest.mark.docker

Factory = Callable[..., ContainerRuntime]


def failure(rt: ContainerRuntime, within: float = 10) -> RuntimeFailure:
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure) as info:
        rt.start()
    assert time.monotonic() - t0 < within, "failing took too long"
    return info.value


@pytest.fixture
def listener() -> Iterator[int]:
    with taken_port() as port:
        yield port


def test_image_missing_with_pull_policy_never(docker_images: Images, runtimes: Factory) -> None:
    rt = runtimes({"image": "steward-test/absent:1", "imagePullPolicy": "Never"})
    exc = failure(rt)
    assert exc.reason == "ImageNotFound"
    assert "steward-test/absent:1" in str(exc) and "Never" in str(exc)


@pytest.mark.parametrize("policy", ["IfNotPresent", "Always"])
def test_pull_fails_fast_without_registry(
    docker_images: Images, runtimes: Factory, policy: str
) -> None:
    # Always pulls even a local image; IfNotPresent pulls a missing one. No registry answers.
    image = docker_images.busybox if policy == "Always" else "steward-test/absent:1"
    rt = runtimes({"image": image, "imagePullPolicy": policy, "command": ["true"]})
    exc = failure(rt, within=10)
    assert exc.reason == "ImagePullFailed"
    assert f"cannot pull image {image}" in str(exc)


def test_private_registry_unreachable_fails_fast(docker_images: Images, runtimes: Factory) -> None:
    # A registry port on this machine that nobody listens on: refused at once, no packet
    # leaves the machine (tests never target other addresses).
    port = free_port()
    rt = runtimes({"image": f"127.0.0.1:{port}/team/app:1"})
    exc = failure(rt, within=8)
    assert exc.reason == "ImagePullFailed"
    assert f"127.0.0.1:{port}" in str(exc)


def test_host_path_missing(docker_images: Images, runtimes: Factory, tmp_path: Path) -> None:
    spec = {
        "image": docker_images.busybox,
        "volumes": [{"hostPath": str(tmp_path / "nope"), "mountPath": "/data"}],
    }
    exc = failure(runtimes(spec))
    assert exc.reason == "InvalidVolume"
    assert str(tmp_path / "nope") in str(exc) and "does not exist" in str(exc)


def test_host_path_relative(docker_images: Images, runtimes: Factory) -> None:
    # The schema refuses it; a spec built around validation must still not become a named volume.
    spec = ContainerSpec.model_validate({"image": docker_images.busybox})
    spec.__dict__["volumes"] = [VolumeMount.model_construct(host_path="data", mount_path="/d")]
    exc = failure(runtimes(spec))
    assert exc.reason == "InvalidVolume" and "not absolute" in str(exc)


def test_file_mounted_on_a_directory(
    docker_images: Images, runtimes: Factory, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    spec = {
        "image": docker_images.busybox,
        "command": ["true"],
        "volumes": [{"hostPath": str(tmp_path / "file"), "mountPath": "/bin"}],
    }
    exc = failure(runtimes(spec))
    assert exc.reason == "InvalidVolume", exc


def test_endpoint_port_taken(docker_images: Images, runtimes: Factory, listener: int) -> None:
    rt = runtimes({"image": docker_images.busybox, "containerPort": 80}, port=listener)
    exc = failure(rt)
    assert exc.reason == "PortTaken"
    assert f"127.0.0.1:{listener}" in str(exc)


def test_extra_port_taken(docker_images: Images, runtimes: Factory, listener: int) -> None:
    spec = {"image": docker_images.busybox, "ports": [{"containerPort": 80, "hostPort": listener}]}
    exc = failure(runtimes(spec))
    assert exc.reason == "PortTaken"


def test_port_taken_by_another_container(docker_images: Images, runtimes: Factory) -> None:
    # Docker's own check (after ours passed in the race window) maps to the same reason.
    port = free_port()
    cmd = ["httpd", "-f", "-p", "80"]
    first = runtimes({"image": docker_images.busybox, "command": cmd, "init": True}, port=port)
    first.start()
    second = runtimes({"image": docker_images.busybox, "command": cmd}, port=port)
    exc = failure(second)
    assert exc.reason == "PortTaken"


def test_command_not_found_leaves_nothing(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    rt = runtimes({"image": docker_images.busybox, "command": ["no-such-binary"]})
    exc = failure(rt)
    assert exc.reason == "CommandNotFound"
    assert "no-such-binary" in str(exc)
    assert not [c for c in session_containers(docker_client) if c.name == rt.name]


def test_cpu_limit_beyond_the_host(docker_images: Images, runtimes: Factory) -> None:
    rt = runtimes({"image": docker_images.busybox, "resources": {"cpu": "512"}})
    exc = failure(rt)
    assert exc.reason == "InvalidResources", exc
    assert "CPU" in str(exc)


def test_foreign_container_with_our_name_is_left_alone(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    rt = runtimes({"image": docker_images.busybox, "command": ["true"]})
    foreign = docker_client.containers.create(
        docker_images.busybox, ["sleep", "60"], name=rt.name, labels={TEST_LABEL: SESSION}
    )
    try:
        exc = failure(rt)
        assert exc.reason == "NameConflict" and rt.name in str(exc)
        obs = rt.observe()
        assert obs.state is ServiceState.ERROR and obs.reason == "NameConflict"
        assert rt.adopt().value == "nothing"
        rt.stop()
        foreign.reload()  # still there
        assert foreign.status == "created"
    finally:
        foreign.remove(force=True)


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    yield


def test_engine_unreachable(
    docker_images: Images, no_engine: None, tmp_path: Path, runtimes: Factory
) -> None:
    rt = runtimes({"image": docker_images.busybox})
    exc = failure(rt, within=5)
    assert exc.reason == "DockerUnavailable"
    assert "no-docker.sock" in str(exc) and "unreachable" in str(exc)
    obs = rt.observe()  # never raises
    assert obs.state is ServiceState.ERROR and obs.reason == "DockerUnavailable"
    for call in (rt.adopt, rt.stop, lambda: list(rt.logs())):
        with pytest.raises(RuntimeFailure) as info:
            call()
        assert info.value.reason == "DockerUnavailable"


def test_engine_unreachable_through_service(
    docker_images: Images, no_engine: None, state_dir: Path, services: list[Service]
) -> None:
    m = container_manifest(unique_name("noengine"), {"image": docker_images.busybox})
    svc = Service.from_manifest(m, state_dir=state_dir)  # adoption fails softly
    services.append(svc)
    assert_start_fails(svc, "DockerUnavailable", "Docker engine unreachable")


def test_image_not_found_through_service(
    docker_images: Images, state_dir: Path, services: list[Service]
) -> None:
    m = container_manifest(
        unique_name("noimage"), {"image": "steward-test/absent:2", "imagePullPolicy": "Never"}
    )
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert_start_fails(svc, "ImageNotFound", "steward-test/absent:2")


def test_port_taken_without_allocation_through_service(
    docker_images: Images, state_dir: Path, services: list[Service], listener: int
) -> None:
    endpoint: dict[str, Any] = {"protocol": "tcp", "port": listener, "allocatePort": False}
    m = container_manifest(
        unique_name("taken"),
        {"image": docker_images.busybox, "command": ["nc", "-lk", "-p", "80"]},
        endpoint,
    )
    svc = Service.from_manifest(m, state_dir=state_dir)
    services.append(svc)
    assert not svc.start(timeout=5)
    assert svc.status.state is ServiceState.ERROR
    assert str(listener) in svc.status.last_error


def test_unknown_user(docker_images: Images, runtimes: Factory) -> None:
    rt = runtimes({"image": docker_images.busybox, "command": ["true"], "user": "nosuchuser"})
    exc = failure(rt)
    assert exc.reason == "InvalidUser" and "nosuchuser" in str(exc)
    assert "OCI runtime" not in str(exc)  # runc's layers of context are trimmed
