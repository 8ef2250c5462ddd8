"""Spec of a Docker container (ZenML's ContainerService), run by ``steward.runtimes.container``.

Field names follow the Kubernetes container spec where one exists (``command``
replaces the image's ENTRYPOINT, ``args`` its CMD, ``env``, ``workingDir``,
``imagePullPolicy``, ``resources``), so a pod spec translates by hand easily.

Ports: the endpoint (``spec.endpoint``) is published on ``endpoint.host`` at the
port Steward chose (preferred, last used or allocated); inside the container it
is ``containerPort``, or the same number as outside when that is unset. ``PORT``
in the container's environment and ``$(PORT)`` in command/args are the port
*inside* the container. ``ports`` lists further fixed publications.
"""

from __future__ import annotations

import math
import re
import signal
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from steward.api.base import CamelModel, cel
from steward.api.common import EnvVar, PythonCallable

SIGNAL_PATTERN = r"^SIG[A-Z0-9]+\Z"
ABS_PATH_PATTERN = r"^/"
# Docker's reference grammar (distribution/reference), without IPv6 hosts.
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z"
)
USER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?\Z"
CAPABILITY_PATTERN = r"^(CAP_)?[A-Z][A-Z_]*\Z"
# Kubernetes resource.Quantity syntax.
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?\Z"
_SUFFIX = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
MIN_CPU = Decimal("0.01")  # Docker refuses less than 1/100 CPU.
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less than 6 MiB.


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``1.5``, ``256Mi``, ``1e9``) as an exact Decimal."""
    m = re.fullmatch(QUANTITY_PATTERN, text)
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 256Mi, 1G)")
    number = m.group(1)
    suffix = m.group(3) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, OverflowError) as exc:
        raise ValueError(f"{text!r} is out of range") from exc


class ImagePullPolicy(StrEnum):
    """When the image is pulled, as the kubelet does it."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class VolumeMount(CamelModel):
    """A host directory or file bind-mounted into the container."""

    model_config = cel(("self.mountPath.matches('[^/]')", "mountPath `/` would hide the image"))

    host_path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=ABS_PATH_PATTERN,
        description="Absolute path on the Docker host; must exist when the container starts.",
    )
    mount_path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=ABS_PATH_PATTERN,
        description="Absolute path inside the container (not `/`).",
    )
    read_only: bool = Field(default=False, description="Mount read-only.")


class PortMapping(CamelModel):
    """A further port published at a fixed host port (the endpoint's is automatic)."""

    container_port: int = Field(ge=1, le=65535, description="Port inside the container.")
    host_port: int = Field(ge=1, le=65535, description="Port on the host; must be free.")
    protocol: Literal["TCP", "UDP"] = Field(default="TCP", description="TCP or UDP.")
    host_ip: str = Field(
        default="127.0.0.1",
        max_length=64,
        description="Host address to publish on; 0.0.0.0 exposes it on every interface.",
    )


class ContainerResources(CamelModel):
    """Limits, as Kubernetes quantities; unset means unlimited."""

    cpu: str | None = Field(
        default=None,
        max_length=64,
        pattern=QUANTITY_PATTERN,
        description="CPU limit in cores: `500m`, `1`, `1.5` (at least 10m).",
    )
    memory: str | None = Field(
        default=None,
        max_length=64,
        pattern=QUANTITY_PATTERN,
        description="Memory limit in bytes: `256Mi`, `1Gi`, `500M` (at least 6Mi); over it the "
        "kernel kills the container (OOMKilled).",
    )

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _syntax(cls, value: object) -> object:
        # Before the schema's pattern, so the error says what a quantity looks like.
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = format(Decimal(str(value)), "f")  # `cpu: 1` in YAML, as Kubernetes allows
        if isinstance(value, str):
            parse_quantity(value)
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu_range(cls, value: str | None) -> str | None:
        if value is not None and parse_quantity(value) < MIN_CPU:
            raise ValueError(f"{value!r} is below Docker's minimum of 10m (0.01 CPU)")
        return value

    @field_validator("memory")
    @classmethod
    def _memory_range(cls, value: str | None) -> str | None:
        if value is not None and math.ceil(parse_quantity(value)) < MIN_MEMORY:
            raise ValueError(f"{value!r} is below Docker's minimum of 6Mi")
        return value

    @property
    def nano_cpus(self) -> int | None:
        """The CPU limit in units of 1e-9 CPUs (Docker's NanoCpus)."""
        return None if self.cpu is None else int(parse_quantity(self.cpu) * 10**9)

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes, rounded up as Kubernetes does."""
        return None if self.memory is None else math.ceil(parse_quantity(self.memory))


class ContainerSpec(CamelModel):
    """A container run on the local Docker engine; Steward, not Docker, restarts it.

    ``command`` or ``python`` or neither (the image's ENTRYPOINT/CMD). ``python``
    runs ``python3 -m steward.pyentry`` in the image, so the image needs
    Python 3 with Steward installed (and the callable importable, e.g. from a
    volume put on ``PYTHONPATH``).
    """

    model_config = cel(
        (
            "!(has(self.command) && has(self.python))",
            "container: set command or python, not both",
        ),
        (
            "!(has(self.args) && has(self.python))",
            "container: args cannot be combined with python (use python.kwargs)",
        ),
        (
            "!has(self.networkMode) || self.networkMode == 'bridge' || "
            "((!has(self.ports) || size(self.ports) == 0) && !has(self.containerPort))",
            "container: ports and containerPort need networkMode bridge",
        ),
        (
            "!has(self.volumes) || self.volumes.all(v, "
            "self.volumes.exists_one(w, w.mountPath == v.mountPath))",
            "container.volumes: each mountPath once",
        ),
    )

    image: str = Field(
        min_length=1,
        max_length=1024,
        pattern=IMAGE_PATTERN,
        description="Image reference, e.g. `nginx:1.27` or `registry:5000/team/app@sha256:...`.",
    )
    image_pull_policy: ImagePullPolicy = Field(
        default=ImagePullPolicy.IF_NOT_PRESENT,
        description="Always pulls before each start; IfNotPresent pulls a missing image; "
        "Never only uses a local image.",
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Replaces the image's ENTRYPOINT (argv, no shell); `$(VAR)` and `$(PORT)` "
        "expand, `$$` escapes.",
    )
    args: list[str] | None = Field(
        default=None,
        description="Replaces the image's CMD (the entrypoint's arguments); `$(VAR)` expands.",
    )
    python: PythonCallable | None = Field(
        default=None,
        description="Run a Python callable in the container instead of command/args.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment of the container (the host's is never passed); PORT is added.",
    )
    container_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port the endpoint listens on inside the container; published on the "
        "endpoint's host and port. Unset: the same number as the host port.",
    )
    ports: list[PortMapping] = Field(
        default_factory=list, max_length=64, description="Further ports to publish."
    )
    volumes: list[VolumeMount] = Field(
        default_factory=list, max_length=64, description="Host paths mounted into the container."
    )
    resources: ContainerResources = Field(
        default_factory=ContainerResources, description="CPU and memory limits."
    )
    user: str | None = Field(
        default=None,
        max_length=256,
        pattern=USER_PATTERN,
        description="`uid[:gid]` or `name[:group]` to run as (default: the image's user).",
    )
    working_dir: str | None = Field(
        default=None,
        max_length=4096,
        pattern=ABS_PATH_PATTERN,
        description="Absolute working directory inside the container (default: the image's).",
    )
    stop_signal: str = Field(
        default="SIGTERM", pattern=SIGNAL_PATTERN, description="Signal sent to stop."
    )
    stop_grace_period_seconds: float = Field(
        default=10, ge=0, le=3600, description="Wait this long after stopSignal, then SIGKILL."
    )
    init: bool | None = Field(
        default=None,
        description="Run Docker's init as PID 1 so signals reach the process and zombies are "
        "reaped; unset means on for python, off otherwise.",
    )
    network_mode: Literal["bridge", "host", "none"] = Field(
        default="bridge",
        description="bridge publishes ports; host shares the host's network (the process must "
        "listen on $(PORT) itself); none has no network.",
    )
    privileged: bool = Field(
        default=False, description="Give the container every capability and device (unsafe)."
    )
    cap_add: list[Annotated[str, Field(max_length=64, pattern=CAPABILITY_PATTERN)]] = Field(
        default_factory=list,
        max_length=64,
        description="Linux capabilities to add, e.g. NET_ADMIN (none by default).",
    )

    @field_validator("image", mode="before")
    @classmethod
    def _image_reference(cls, value: object) -> object:
        # Before the schema's pattern, so the error is readable rather than the regex.
        if isinstance(value, str) and value and re.fullmatch(IMAGE_PATTERN, value) is None:
            raise ValueError(
                f"{value!r} is not an image reference like `name:tag` (repository names are "
                "lowercase; a registry host may prefix them)"
            )
        return value

    @field_validator("stop_signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        if value not in signal.Signals.__members__:
            raise ValueError(f"{value} is not a signal name like SIGTERM or SIGINT")
        return value

    @field_validator("volumes")
    @classmethod
    def _distinct_mounts(cls, value: list[VolumeMount]) -> list[VolumeMount]:
        seen: set[str] = set()
        for v in value:
            target = v.mount_path.rstrip("/") or "/"
            if target == "/":
                raise ValueError("mountPath `/` would hide the image")
            if target in seen:
                raise ValueError(f"mountPath {v.mount_path} is mounted twice")
            seen.add(target)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ContainerSpec:
        if self.command is not None and self.python is not None:
            raise ValueError("container: set command or python, not both")
        if self.python is not None and self.args is not None:
            raise ValueError("container: args cannot be combined with python (use python.kwargs)")
        if self.network_mode != "bridge" and self.ports:
            raise ValueError(
                f"container.ports: cannot publish with networkMode {self.network_mode}"
            )
        if self.network_mode != "bridge" and self.container_port is not None:
            raise ValueError(
                f"container.containerPort: no port mapping with networkMode {self.network_mode}"
            )
        return self

    @property
    def use_init(self) -> bool:
        """Whether Docker's init runs as PID 1."""
        return self.init if self.init is not None else self.python is not None
