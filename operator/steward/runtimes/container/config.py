"""From ContainerSpec + RuntimeContext to Docker's create arguments; pure but for host checks.

Kept apart from the Docker calls so the translation (names, labels, env,
argv, port publication, limits) is testable without an engine.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from steward.api import reasons as R
from steward.api.container import ContainerSpec
from steward.runtimes.base import RuntimeContext, RuntimeFailure, spec_hash
from steward.runtimes.expand import expand, expand_all, expand_json

LABEL_MANAGED = "steward.dev/managed"
LABEL_SERVICE = "steward.dev/service"
LABEL_SPEC_HASH = "steward.dev/spec-hash"
PYTHON = "python3"
"""Interpreter for python mode: Debian's and the official images' name for it."""
PYENTRY = ["-m", "steward.pyentry"]
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
"""json-file, rotated: `docker logs` keeps working and the disk does not fill up."""


def container_name(ctx: RuntimeContext) -> str:
    """`steward-<namespace>.<name>`: one container per service, found again after a restart."""
    return f"steward-{ctx.identity.slug}"


def effective_hash(spec: ContainerSpec, ctx: RuntimeContext) -> str:
    """The engine's hash of the spec; our own when used without the engine."""
    return ctx.spec_hash or spec_hash(spec)


def labels(spec: ContainerSpec, ctx: RuntimeContext) -> dict[str, str]:
    """Caller's labels plus the three Steward finds its containers by (not overridable)."""
    out = dict(ctx.labels)
    out.update(
        {
            LABEL_MANAGED: "true",
            LABEL_SERVICE: ctx.identity.key,
            LABEL_SPEC_HASH: effective_hash(spec, ctx),
        }
    )
    return out


def container_port(spec: ContainerSpec, ctx: RuntimeContext) -> int | None:
    """The endpoint's port inside the container (host network: the host port itself)."""
    if spec.network_mode == "host":
        return ctx.port
    return spec.container_port or ctx.port


def environment(spec: ContainerSpec, ctx: RuntimeContext) -> dict[str, str]:
    """Only the spec's env (never the host's), PORT being the port inside the container.

    Literal values are expanded again against the container's view (so
    `$(PORT)` means the inside port); valueFrom values come resolved in ctx.env.
    """
    env: dict[str, str] = {}
    cport = container_port(spec, ctx)
    if cport is not None:
        env["PORT"] = str(cport)
    for entry in spec.env:
        if entry.value_from is None:
            env[entry.name] = expand(entry.value or "", env)
        elif entry.name in ctx.env:
            env[entry.name] = ctx.env[entry.name]
        # else: an optional reference that resolved to nothing, as Kubernetes skips it
    return env


def entrypoint_and_cmd(
    spec: ContainerSpec, env: dict[str, str]
) -> tuple[list[str] | None, list[str] | None]:
    """(ENTRYPOINT, CMD) overrides; None keeps the image's. Kubernetes semantics."""
    if spec.python is not None:
        kwargs = expand_json(spec.python.kwargs, env)
        argv = [PYTHON, *PYENTRY, "--callable", spec.python.callable]
        return [*argv, "--kwargs-json", json.dumps(kwargs)], None
    command = expand_all(spec.command, env) if spec.command is not None else None
    args = expand_all(spec.args, env) if spec.args is not None else None
    return command, args


def host_ip(host: str) -> str:
    """Docker publishes on an address, not a name: resolve `localhost` and friends."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise RuntimeFailure(
            f"endpoint host {host!r} does not resolve: {exc}", reason=R.INVALID_HOST
        ) from exc
    return str(infos[0][4][0])


@dataclass
class Publication:
    """One published port: host address and port -> container port/protocol."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"


@dataclass
class ContainerConfig:
    """Everything `docker create` gets, plus what start() checks first."""

    name: str
    image: str
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    publications: list[Publication] = field(default_factory=list)
    host_paths: list[str] = field(default_factory=list)


def publications(spec: ContainerSpec, ctx: RuntimeContext) -> list[Publication]:
    """The endpoint (on ctx.host:ctx.port) and the spec's extra ports."""
    if spec.network_mode == "none" and ctx.port is not None:
        raise RuntimeFailure(
            "container.networkMode none cannot serve an endpoint; remove spec.endpoint or "
            "use bridge",
            reason=R.INVALID_SPEC,
        )
    if spec.network_mode != "bridge":
        return []
    out: list[Publication] = []
    cport = container_port(spec, ctx)
    if ctx.port is not None and cport is not None:
        out.append(Publication(host_ip(ctx.host), ctx.port, cport))
    for m in spec.ports:
        out.append(
            Publication(host_ip(m.host_ip), m.host_port, m.container_port, m.protocol.lower())
        )
    seen: set[str] = set()
    for pub in out:
        if pub.key in seen:
            raise RuntimeFailure(
                f"container port {pub.key} is published twice (containerPort and ports)",
                reason=R.INVALID_SPEC,
            )
        seen.add(pub.key)
    return out


def build(spec: ContainerSpec, ctx: RuntimeContext) -> ContainerConfig:
    """The create arguments for this spec and context (no Docker call)."""
    from docker.types import LogConfig, Mount

    env = environment(spec, ctx)
    entrypoint, cmd = entrypoint_and_cmd(spec, env)
    pubs = publications(spec, ctx)
    ports: dict[str, tuple[str, int]] = {p.key: (p.host_ip, p.host_port) for p in pubs}
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": container_name(ctx),
        "labels": labels(spec, ctx),
        "environment": env,
        "entrypoint": entrypoint,
        "command": cmd,
        "ports": ports,
        "mounts": [
            Mount(target=v.mount_path, source=v.host_path, type="bind", read_only=v.read_only)
            for v in spec.volumes
        ],
        "user": spec.user,
        "working_dir": spec.working_dir,
        "stop_signal": spec.stop_signal,
        "init": spec.use_init,
        "network_mode": spec.network_mode,
        "privileged": spec.privileged,
        "cap_add": list(spec.cap_add) or None,
        "log_config": LogConfig(type="json-file", config=dict(LOG_OPTIONS)),
        # No restart policy: Steward's engine restarts, with its back-off.
        "restart_policy": {"Name": "no"},
    }
    if spec.network_mode == "bridge":
        kwargs["extra_hosts"] = {"host.docker.internal": "host-gateway"}
    if spec.resources.nano_cpus is not None:
        kwargs["nano_cpus"] = spec.resources.nano_cpus
    if spec.resources.memory_bytes is not None:
        kwargs["mem_limit"] = spec.resources.memory_bytes
        kwargs["memswap_limit"] = spec.resources.memory_bytes  # no swap, as Kubernetes
    return ContainerConfig(
        name=container_name(ctx),
        image=spec.image,
        create_kwargs={k: v for k, v in kwargs.items() if v is not None},
        publications=pubs,
        host_paths=[v.host_path for v in spec.volumes],
    )


def check_host_paths(paths: list[str]) -> None:
    """Bind sources must be absolute and exist (Docker would make a named volume or a dir)."""
    for path in paths:
        if not os.path.isabs(path):
            raise RuntimeFailure(
                f"volume hostPath {path!r} is not absolute", reason=R.INVALID_VOLUME
            )
        if not os.path.exists(path):
            raise RuntimeFailure(
                f"volume hostPath {path} does not exist on the Docker host", reason=R.INVALID_VOLUME
            )


def check_ports_free(pubs: list[Publication]) -> None:
    """Fail early and clearly when something already listens on a port to publish."""
    for p in pubs:
        family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if p.protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(family, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip, p.host_port))
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
                raise RuntimeFailure(
                    f"port {p.host_ip}:{p.host_port}/{p.protocol} is taken ({why})",
                    reason=R.PORT_TAKEN,
                ) from exc
