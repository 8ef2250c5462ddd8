"""ContainerRuntime on a real engine, driven directly (no Service engine in between)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from steward.api.state import ServiceState
from steward.runtimes.base import Adoption
from steward.runtimes.container import ContainerRuntime
from tests.support.containers import APPS, TEST_LABEL, Images, busybox_httpd, unique_name, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.docker

Factory = Callable[..., ContainerRuntime]


def get(port: int) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.RequestException:
        return None


def test_publishes_endpoint_and_labels_container(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    port = free_port()
    rt = runtimes(busybox_httpd(docker_images), port=port, env={"PORT": str(port)}, spec_hash="h1")
    assert rt.adopt() is Adoption.NOTHING
    assert rt.observe().state is ServiceState.INACTIVE
    rt.start()
    obs = rt.observe()
    assert obs.state is ServiceState.ACTIVE and obs.running
    assert obs.details["hostPort"] == port
    assert obs.details["image"] == docker_images.busybox
    response = wait_for(lambda: get(port), 10)
    assert response.status_code == 200 and response.text.strip() == "steward-test ok"

    c = docker_client.containers.get(obs.details["containerId"])
    assert c.name == rt.name
    assert c.labels["steward.dev/managed"] == "true"
    assert c.labels["steward.dev/service"] == rt.ctx.identity.key
    assert c.labels["steward.dev/spec-hash"] == "h1"
    assert c.labels[TEST_LABEL]
    host = c.attrs["HostConfig"]
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert not host["Privileged"] and not host["CapAdd"]
    assert "PORT=8080" in c.attrs["Config"]["Env"]

    rt.stop()
    assert rt.observe().state is ServiceState.INACTIVE
    assert not docker_client.containers.list(all=True, filters={"id": c.id})
    rt.stop()  # idempotent
    assert get(port) is None


def test_start_twice_keeps_the_container(docker_images: Images, runtimes: Factory) -> None:
    port = free_port()
    rt = runtimes(busybox_httpd(docker_images), port=port, spec_hash="h1")
    rt.start()
    first = rt.observe().details["containerId"]
    rt.start()
    assert rt.observe().details["containerId"] == first


def test_adoption_by_a_second_runtime(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    port = free_port()
    name = unique_name("adopt")
    first = runtimes(busybox_httpd(docker_images), name=name, port=port, spec_hash="h1")
    first.start()
    cid = first.observe().details["containerId"]

    second = runtimes(busybox_httpd(docker_images), name=name, port=port, spec_hash="h1")
    assert second.adopt() is Adoption.ADOPTED
    second.start()  # no second container
    assert second.observe().details["containerId"] == cid
    # Without a known port (a fresh state dir) it is still adopted; details say where it serves.
    blind = runtimes(busybox_httpd(docker_images), name=name, spec_hash="h1")
    assert blind.adopt() is Adoption.ADOPTED
    assert blind.observe().details["hostPort"] == port
    mine = docker_client.containers.list(
        all=True, filters={"label": f"steward.dev/service={first.ctx.identity.key}"}
    )
    assert [c.id for c in mine] == [cid]

    changed = runtimes(busybox_httpd(docker_images), name=name, port=port, spec_hash="h2")
    assert changed.adopt() is Adoption.OUTDATED
    moved = runtimes(busybox_httpd(docker_images), name=name, port=free_port(), spec_hash="h1")
    assert moved.adopt() is Adoption.OUTDATED
    changed.stop()
    changed.start()
    new_id = changed.observe().details["containerId"]
    assert new_id != cid
    assert first.adopt() is Adoption.OUTDATED
    assert wait_for(lambda: get(port), 10).status_code == 200


def test_start_replaces_an_exited_container(docker_images: Images, runtimes: Factory) -> None:
    rt = runtimes({"image": docker_images.busybox, "command": ["sh", "-c", "echo run; exit 7"]})
    rt.start()
    obs = wait_for(lambda: (o := rt.observe()).state is ServiceState.ERROR and o, 10)
    assert obs.exit_code == 7 and obs.reason == "ContainerExited"
    assert obs.message == "exited with code 7" and obs.finished_at is not None
    assert rt.adopt() is Adoption.NOTHING  # an ended run is not adopted
    old = obs.details["containerId"]
    rt.start()
    assert rt.observe().details["containerId"] != old


def test_stop_waits_grace_then_kills(docker_images: Images, runtimes: Factory) -> None:
    # A shell that ignores SIGTERM (also as PID 1): only SIGKILL after the grace ends it.
    cmd = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"]
    rt = runtimes({"image": docker_images.busybox, "command": cmd, "stopGracePeriodSeconds": 1.5})
    rt.start()
    wait_for(lambda: "ready" in list(rt.logs()), 10)
    t0 = time.monotonic()
    rt.stop()
    took = time.monotonic() - t0
    assert 1.4 <= took < 6, took
    assert rt.observe().state is ServiceState.INACTIVE


def test_stop_signal_ends_a_cooperative_process_at_once(
    docker_images: Images, runtimes: Factory
) -> None:
    cmd = ["sh", "-c", "trap 'echo bye; exit 0' USR1; echo ready; while :; do sleep 0.1; done"]
    spec = {
        "image": docker_images.busybox,
        "command": cmd,
        "init": True,
        "stopSignal": "SIGUSR1",
        "stopGracePeriodSeconds": 30,
    }
    rt = runtimes(spec)
    rt.start()
    wait_for(lambda: "ready" in list(rt.logs()), 10)
    t0 = time.monotonic()
    rt.stop()
    assert time.monotonic() - t0 < 5


def test_force_stop_kills_without_grace(docker_images: Images, runtimes: Factory) -> None:
    cmd = ["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"]
    rt = runtimes({"image": docker_images.busybox, "command": cmd, "stopGracePeriodSeconds": 60})
    rt.start()
    t0 = time.monotonic()
    rt.stop(force=True)
    assert time.monotonic() - t0 < 5
    assert rt.observe().state is ServiceState.INACTIVE


def test_logs_tail_and_follow(docker_images: Images, runtimes: Factory) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done; echo oops >&2; sleep 0.5"
    rt = runtimes({"image": docker_images.busybox, "command": ["sh", "-c", script]})
    rt.start()
    t0 = time.monotonic()
    followed = list(rt.logs(follow=True))  # ends when the container does
    assert time.monotonic() - t0 < 10
    assert [line for line in followed if line.startswith("line")] == [
        f"line {i}" for i in range(1, 6)
    ]
    assert "oops" in followed  # stderr too
    assert list(rt.logs(tail=2))[-1] == "oops"
    assert len(list(rt.logs(tail=2))) == 2


def test_oom_killed_is_reported(docker_images: Images, runtimes: Factory) -> None:
    # Allocate only once the container runs: an OOM before containerd watches the new
    # cgroup is seen by nobody (Docker then reports a bare SIGKILL, see the next test).
    cmd = ["sh", "-c", "sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]
    rt = runtimes({"image": docker_images.busybox, "command": cmd, "resources": {"memory": "8Mi"}})
    rt.start()
    # Docker may record the OOM event a moment after the exit: wait for the flag itself.
    deadline = time.monotonic() + 20
    while (obs := rt.observe()).reason != "OOMKilled" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert obs.reason == "OOMKilled", obs
    assert obs.state is ServiceState.ERROR
    assert "out of memory" in obs.message and "8Mi" in obs.message
    assert obs.exit_code == 137


def test_resource_limits_reach_docker(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    spec = {
        "image": docker_images.busybox,
        "command": ["sleep", "30"],
        "init": True,
        "resources": {"cpu": "500m", "memory": "32Mi"},
        "user": "65534:65534",
        "workingDir": "/tmp",
    }
    rt = runtimes(spec)
    rt.start()
    c = docker_client.containers.get(rt.observe().details["containerId"])
    assert c.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert c.attrs["HostConfig"]["Memory"] == 32 * 2**20
    assert c.attrs["Config"]["User"] == "65534:65534"
    assert c.attrs["Config"]["WorkingDir"] == "/tmp"


def test_volume_is_mounted(docker_images: Images, runtimes: Factory, tmp_path: Any) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("from host\n")
    spec = {
        "image": docker_images.busybox,
        "command": ["cat", "/data/in.txt"],
        "volumes": [{"hostPath": str(tmp_path / "data"), "mountPath": "/data", "readOnly": True}],
    }
    rt = runtimes(spec)
    rt.start()
    wait_for(lambda: rt.observe().state is ServiceState.INACTIVE, 10)
    assert list(rt.logs()) == ["from host"]
    assert rt.observe().reason == "Completed"


def test_python_callable_mode(docker_images: Images, runtimes: Factory) -> None:
    port = free_port()
    spec = {
        "image": docker_images.python,
        "python": {"callable": "ctapp:serve", "kwargs": {"port": "$(PORT)", "greeting": "hi"}},
        "env": [{"name": "PYTHONPATH", "value": "/apps"}, {"name": "MARK", "value": "m$(PORT)"}],
        "containerPort": 9000,
        "volumes": [{"hostPath": str(APPS), "mountPath": "/apps", "readOnly": True}],
    }
    rt = runtimes(spec, port=port, env={"PORT": str(port)})
    rt.start()
    response = wait_for(lambda: get(port), 20)
    assert response.json()["greeting"] == "hi"
    assert response.json()["mark"] == "m9000"
    assert any("serving hi on 9000" in line for line in rt.logs())
    t0 = time.monotonic()
    rt.stop()  # Docker's init forwards SIGTERM: no waiting for the grace period
    assert time.monotonic() - t0 < 5


def test_python_callable_exit_code(docker_images: Images, runtimes: Factory) -> None:
    spec = {
        "image": docker_images.python,
        "python": {"callable": "ctapp:fail", "kwargs": {"code": 4}},
        "env": [{"name": "PYTHONPATH", "value": "/apps"}],
        "volumes": [{"hostPath": str(APPS), "mountPath": "/apps", "readOnly": True}],
    }
    rt = runtimes(spec)
    rt.start()
    obs = wait_for(lambda: (o := rt.observe()).state is ServiceState.ERROR and o, 20)
    assert obs.exit_code == 4
    assert list(rt.logs()) == ["failing with 4"]


def test_paused_container_is_an_error_and_still_stops(
    docker_images: Images, runtimes: Factory, docker_client: Any
) -> None:
    rt = runtimes({"image": docker_images.busybox, "command": ["sleep", "60"], "init": True})
    rt.start()
    c = docker_client.containers.get(rt.observe().details["containerId"])
    c.pause()
    # observe() answers from the engine's events stream: the pause shows once it arrives.
    obs = wait_for(lambda: (o := rt.observe()).state is ServiceState.ERROR and o, 5)
    assert obs.reason == "Paused", obs
    assert rt.adopt() is Adoption.ADOPTED
    t0 = time.monotonic()
    rt.stop()
    assert time.monotonic() - t0 < 5
    assert rt.observe().state is ServiceState.INACTIVE


def test_sigkill_under_a_memory_limit_hints_at_memory(
    docker_images: Images, runtimes: Factory
) -> None:
    spec = {
        "image": docker_images.busybox,
        "command": ["sh", "-c", "kill -KILL $$$$"],  # `$$` escapes `$`, as in Kubernetes
        "init": True,  # PID 1 cannot be SIGKILLed from inside; Docker's init reports 137
        "resources": {"memory": "16Mi"},
    }
    rt = runtimes(spec)
    rt.start()
    obs = wait_for(lambda: (o := rt.observe()).state is ServiceState.ERROR and o, 15)
    assert obs.reason == "ContainerExited" and obs.exit_code == 137
    assert obs.message == "killed by SIGKILL (exit code 137); possibly out of memory (limit 16Mi)"
