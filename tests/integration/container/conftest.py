"""Container tests run on a real Docker engine with images built locally.

``docker_images`` (session) runs hack/docker/ensure-dockerd.sh and
build-test-images.sh; without an engine the tests skip, and under CI=true
they fail. Every container a test starts belongs to the namespace
``ct-<session>`` (and, when started through a runtime directly, carries the
label ``steward.dev/test-session=<session>``): the session-end check fails
the run if any of them survives, and removes those, by id.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steward.api.container import ContainerSpec
from steward.runtimes.base import RuntimeContext, ServiceIdentity
from steward.runtimes.container import ContainerRuntime

ROOT = Path(__file__).resolve().parents[3]
HACK = ROOT / "hack" / "docker"
APPS = Path(__file__).resolve().parent / "apps"
SESSION = uuid.uuid4().hex[:10]
NAMESPACE = f"ct-{SESSION}"
TEST_LABEL = "steward.dev/test-session"
_used_docker = False
_names = itertools.count(1)


@dataclass(frozen=True)
class Images:
    busybox: str
    python: str


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def _why(r: subprocess.CompletedProcess[str] | None, script: str) -> str:
    """The script's own summary lines (not the daemon's log it prints after them)."""
    if r is None:
        return f"{script} timed out"
    own = [line for line in r.stderr.splitlines() if line.startswith(script.split(".")[0] + ":")]
    return f"{script}: " + " / ".join(own or r.stderr.strip().splitlines()[-5:])[-600:]


def _run(script: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
    # A dockerd started from here must not carry the marker the root leak check hunts for.
    env = {k: v for k, v in os.environ.items() if k != "STEWARD_TEST_SESSION"}
    try:
        return subprocess.run(
            ["bash", str(HACK / script)], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="session")
def docker_images() -> Images:
    """A running engine and the test images (built once, cached outside the clone)."""
    global _used_docker
    r = _run("ensure-dockerd.sh", 240)
    if r is None or r.returncode != 0:
        _unavailable(f"no Docker engine ({_why(r, 'ensure-dockerd.sh')})")
    r = _run("build-test-images.sh", 900)
    if r is None or r.returncode != 0:
        _unavailable(f"test images could not be built ({_why(r, 'build-test-images.sh')})")
    assert r is not None
    found = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
    _used_docker = True
    return Images(found["STEWARD_TEST_BUSYBOX_IMAGE"], found["STEWARD_TEST_PYTHON_IMAGE"])


@pytest.fixture(scope="session")
def docker_client(docker_images: Images) -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=30)
    yield client
    client.close()


def unique_name(prefix: str) -> str:
    """A service name no other test of this session uses."""
    return f"{prefix}-{next(_names)}"


def make_runtime(
    spec: dict[str, Any] | ContainerSpec,
    runtime_dir: Path,
    name: str | None = None,
    **ctx: Any,
) -> ContainerRuntime:
    """A ContainerRuntime for ``ct-<session>/<name>``, labelled with the test session."""
    parsed = spec if isinstance(spec, ContainerSpec) else ContainerSpec.model_validate(spec)
    context = RuntimeContext(
        identity=ServiceIdentity(NAMESPACE, name or unique_name("rt")),
        runtime_dir=runtime_dir,
        labels={TEST_LABEL: SESSION},
        **ctx,
    )
    return ContainerRuntime(parsed, context)


@pytest.fixture
def runtimes(tmp_path: Path, docker_images: Images) -> Iterator[Callable[..., ContainerRuntime]]:
    """Factory of runtimes that are force-stopped after the test."""
    made: list[ContainerRuntime] = []

    def factory(spec: dict[str, Any] | ContainerSpec, **kw: Any) -> ContainerRuntime:
        rt = make_runtime(spec, tmp_path / "rt", **kw)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        try:
            rt.stop(force=True)
        except Exception as exc:  # report, keep cleaning; the leak check has the last word
            print(f"cleanup of {rt.name} failed: {exc}")
        rt.close()


def container_manifest(
    name: str, container: dict[str, Any], endpoint: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"container": container, **spec}
    if endpoint is not None:
        body["endpoint"] = endpoint
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def session_containers(client: Any) -> list[Any]:
    """Managed containers this session started (by its namespace or its label)."""
    out = []
    for c in client.containers.list(all=True, filters={"label": "steward.dev/managed=true"}):
        labels = c.labels or {}
        if labels.get(TEST_LABEL) == SESSION or labels.get("steward.dev/service", "").startswith(
            f"{NAMESPACE}/"
        ):
            out.append(c)
    return out


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {timeout}s"
            return value
        time.sleep(interval)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _used_docker:
        return
    import docker

    client = docker.from_env(timeout=30)
    try:
        leaked = session_containers(client)
        for c in leaked:
            print(f"\nLEAK CHECK FAILED: container {c.name} ({c.id[:12]}, {c.status}) survived")
            c.remove(force=True, v=True)  # by id, only this session's
        if leaked:
            session.exitstatus = 1
    finally:
        client.close()
