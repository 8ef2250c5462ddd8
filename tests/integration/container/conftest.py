"""Container tests run on a real Docker engine with images built locally.

``docker_images`` (session) runs hack/docker/ensure-dockerd.sh and
build-test-images.sh; without an engine the tests skip, and under CI=true
they fail. Every container a test starts belongs to the namespace
``ct-<session>`` (and, when started through a runtime directly, carries the
label ``steward.dev/test-session=<session>``): the session-end check fails
the run if any of them survives, and removes those, by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.api.container import ContainerSpec
from steward.runtimes.container import ContainerRuntime
from tests.support import containers
from tests.support.containers import Images, make_runtime, session_containers
from tests.support.runtimes import force_stop


@pytest.fixture(scope="session")
def docker_images() -> Images:
    """A running engine and the test images (built once, cached outside the clone)."""
    return containers.docker_images()


@pytest.fixture(scope="session")
def docker_client(docker_images: Images) -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=30)
    yield client
    client.close()


@pytest.fixture
def runtimes(tmp_path: Path, docker_images: Images) -> Iterator[Callable[..., ContainerRuntime]]:
    """Factory of runtimes that are force-stopped after the test."""
    made: list[ContainerRuntime] = []

    def factory(spec: dict[str, Any] | ContainerSpec, **kw: Any) -> ContainerRuntime:
        rt = make_runtime(spec, tmp_path / "rt", **kw)
        made.append(rt)
        return rt

    yield factory
    force_stop(made)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not containers.used_docker():
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
