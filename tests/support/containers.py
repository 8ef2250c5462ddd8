"""Docker for the container tests: the engine, the test images, session-scoped names."""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steward.api.container import ContainerSpec
from steward.runtimes.base import RuntimeContext, ServiceIdentity
from steward.runtimes.container import ContainerRuntime
from tests.support import waits
from tests.support.paths import REPO

HACK = REPO / "hack" / "docker"
APPS = REPO / "tests" / "support" / "apps"  # mounted at /apps
SESSION = uuid.uuid4().hex[:10]
NAMESPACE = f"ct-{SESSION}"
TEST_LABEL = "steward.dev/test-session"
_names = itertools.count(1)


@dataclass(frozen=True)
class Images:
    busybox: str
    python: str


_images: list[Images] = []  # the one Images of this session, once built


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


def run_docker_script(script: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
    # A dockerd started from here must not carry the marker the root leak check hunts for.
    env = {k: v for k, v in os.environ.items() if k != "STEWARD_TEST_SESSION"}
    try:
        return subprocess.run(
            ["bash", str(HACK / script)], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return None


def images_built(r: subprocess.CompletedProcess[str]) -> Images:
    """The image names build-test-images.sh printed (``NAME=image`` lines)."""
    found = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
    return Images(found["STEWARD_TEST_BUSYBOX_IMAGE"], found["STEWARD_TEST_PYTHON_IMAGE"])


def docker_images() -> Images:
    """A running engine and the test images (built once a session, cached outside the clone)."""
    if _images:
        return _images[0]
    r = run_docker_script("ensure-dockerd.sh", 240)
    if r is None or r.returncode != 0:
        _unavailable(f"no Docker engine ({_why(r, 'ensure-dockerd.sh')})")
    r = run_docker_script("build-test-images.sh", 900)
    if r is None or r.returncode != 0:
        _unavailable(f"test images could not be built ({_why(r, 'build-test-images.sh')})")
    assert r is not None
    _images.append(images_built(r))
    return _images[0]


def used_docker() -> bool:
    return bool(_images)


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


def busybox_httpd(images: Images, **extra: Any) -> dict[str, Any]:
    """A container spec: busybox's httpd serving /www on port 8080, under an init."""
    return {
        "image": images.busybox,
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "containerPort": 8080,
        "init": True,
        **extra,
    }


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


def busybox_sh(
    images: Images, prefix: str, script: str, container: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A ManagedService named from PREFIX running ``sh -c SCRIPT`` in busybox; CONTAINER:
    more container fields, SPEC: more fields of the spec."""
    body = {"image": images.busybox, "command": ["sh", "-c", script], **(container or {})}
    return container_manifest(unique_name(prefix), body, **spec)


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
    return waits.wait_for(predicate, timeout, step=interval)
