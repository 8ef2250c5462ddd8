"""Talking to the Docker engine: client, error translation, images.

Every Docker or transport error leaves here as a RuntimeFailure whose reason
a user can act on (DockerUnavailable, ImageNotFound, ImagePullFailed,
PortTaken, InvalidVolume, ...) and whose message has secret values redacted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests

from steward.api import reasons as R
from steward.api.container import ImagePullPolicy
from steward.runtimes.base import RuntimeFailure

API_TIMEOUT = 15.0
"""Seconds for one API call; a healthy local engine answers in milliseconds."""
PULL_TIMEOUT = 120.0
"""Seconds without progress before a pull is abandoned."""
REGISTRY_PROBE_TIMEOUT = 3.0
"""A registry that does not resolve or accept TCP in this long fails the pull at once."""

# Substrings of Docker's error texts -> the reason reported.
_REASONS: list[tuple[tuple[str, ...], str]] = [
    (("port is already allocated", "address already in use"), R.PORT_TAKEN),
    (
        (
            "bind source path does not exist",
            "invalid mount config",
            "mount denied",
            "error mounting",
            "trying to mount a directory onto a file",
        ),
        R.INVALID_VOLUME,
    ),
    (
        ("executable file not found", "no such file or directory", "permission denied"),
        R.COMMAND_NOT_FOUND,
    ),
    (("range of cpus", "nanocpus", "minimum memory limit"), "InvalidResources"),
    (("is already in use by container",), R.NAME_CONFLICT),
    (("no such image",), R.IMAGE_NOT_FOUND),
    (("unable to find user", "no matching entries in passwd"), "InvalidUser"),
]


def connect(timeout: float | None = API_TIMEOUT) -> Any:
    """A client for the engine in DOCKER_HOST (default: the local socket); fails fast."""
    try:
        return docker.DockerClient.from_env(timeout=timeout)  # type: ignore[arg-type]
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise unavailable(exc) from exc


def unavailable(exc: BaseException) -> RuntimeFailure:
    """The engine cannot be reached: say where we looked and what to do."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    detail = str(exc).split("\n")[0][:300]
    return RuntimeFailure(
        f"Docker engine unreachable at {where}: {detail} (is dockerd running? "
        "hack/docker/ensure-dockerd.sh starts one)",
        reason=R.DOCKER_UNAVAILABLE,
    )


_OCI_NOISE = ("unable to start container process: ", "error during container init: ")


def explain(exc: docker.errors.APIError) -> str:
    """Docker's own explanation, without the HTTP preamble and runc's layers of context."""
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = str(text or exc).strip()
    if "OCI runtime" in text:
        for marker in _OCI_NOISE:
            text = text.rpartition(marker)[2]
        text = text.replace(": unknown", "")
    return text


def classify(text: str, default: str = "DockerError") -> str:
    """The reason for a Docker error text."""
    low = text.lower()
    for needles, reason in _REASONS:
        if any(n in low for n in needles):
            return reason
    return default


@contextlib.contextmanager
def translated(
    what: str, redact: Callable[[str], str], default: str = "DockerError"
) -> Iterator[None]:
    """Turn Docker/transport errors raised inside into RuntimeFailure(`what: why`)."""
    try:
        yield
    except RuntimeFailure:
        raise
    except docker.errors.APIError as exc:
        text = explain(exc)
        raise RuntimeFailure(redact(f"{what}: {text}"), reason=classify(text, default)) from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise unavailable(exc) from exc


# -- images ---------------------------------------------------------------------------


def image_present(client: Any, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def registry_of(image: str) -> str:
    """The registry host[:port] an image reference is pulled from."""
    repo, _ = docker.utils.parse_repository_tag(image)
    registry, _ = docker.auth.resolve_repository_name(repo)
    return "registry-1.docker.io" if registry in ("docker.io", "index.docker.io") else registry


def _probe_registry(registry: str) -> str | None:
    """None when the registry accepts TCP; else why not. Bounded by REGISTRY_PROBE_TIMEOUT."""
    host, _, port_text = (
        registry.rpartition(":") if registry.count(":") == 1 else (registry, "", "")
    )
    port = int(port_text) if port_text.isdigit() else 443

    def attempt() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=REGISTRY_PROBE_TIMEOUT):
                return None
        except socket.gaierror as exc:
            return f"{host} does not resolve ({exc.strerror or exc})"
        except OSError as exc:
            return f"{host}:{port} is unreachable ({exc.strerror or exc})"

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        # getaddrinfo has no timeout of its own: bound the whole attempt.
        return pool.submit(attempt).result(timeout=REGISTRY_PROBE_TIMEOUT + 0.5)
    except concurrent.futures.TimeoutError:
        return f"{host}:{port} did not answer within {REGISTRY_PROBE_TIMEOUT:.0f}s"
    finally:
        pool.shutdown(wait=False)


def _daemon_uses_proxy(client: Any) -> bool:
    with contextlib.suppress(Exception):
        info = client.info()
        return bool(info.get("HttpProxy") or info.get("HttpsProxy"))
    return False


def pull(client: Any, image: str, redact: Callable[[str], str]) -> None:
    """Pull, failing within seconds when the registry cannot be reached."""
    registry = registry_of(image)
    if not _daemon_uses_proxy(client):
        why = _probe_registry(registry)
        if why is not None:
            raise RuntimeFailure(
                redact(f"cannot pull image {image}: registry {registry} unreachable: {why}"),
                reason=R.IMAGE_PULL_FAILED,
            )
    repo, tag = docker.utils.parse_repository_tag(image)
    puller = connect(timeout=PULL_TIMEOUT)
    try:
        with translated(f"cannot pull image {image}", redact, default=R.IMAGE_PULL_FAILED):
            for event in puller.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    raise RuntimeFailure(
                        redact(f"cannot pull image {image}: {event['error']}"),
                        reason=R.IMAGE_PULL_FAILED,
                    )
    except RuntimeFailure as exc:
        if exc.reason != R.DOCKER_UNAVAILABLE:
            exc.reason = R.IMAGE_PULL_FAILED
        raise
    finally:
        puller.close()


def ensure_image(
    client: Any, image: str, policy: ImagePullPolicy, redact: Callable[[str], str]
) -> None:
    """Apply imagePullPolicy: Never needs it local, IfNotPresent pulls if missing, Always pulls."""
    with translated(f"cannot inspect image {image}", redact):
        present = image_present(client, image)
    if policy is ImagePullPolicy.NEVER:
        if not present:
            raise RuntimeFailure(
                redact(f"image {image} is not present locally and imagePullPolicy is Never"),
                reason=R.IMAGE_NOT_FOUND,
            )
        return
    if policy is ImagePullPolicy.IF_NOT_PRESENT and present:
        return
    pull(client, image, redact)
