"""Spec of a local daemon process (ZenML's LocalDaemonService)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from steward.api.base import CamelModel, cel, re2
from steward.api.common import EnvVar, PythonCallable
from steward.api.container import parse_quantity

SIGNAL_PATTERN = r"^SIG[A-Z0-9]+\Z"
MAX_LOG_BYTES = 1024**3
MEMORY_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?\Z"
"""Bytes: plain, binary (Ki Mi Gi Ti) or decimal (k M G T) suffixes."""
CPU_PATTERN = r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)\Z"
"""Cores (`1`, `0.5`) or millicores (`500m`)."""
MIN_MEMORY = 4 * 1024 * 1024
MAX_PIDS = 4194304


class DaemonResources(CamelModel):
    """Limits for a sandboxed daemon (its cgroup), as Kubernetes quantities; unset: the
    sandbox's ceiling, and nothing at all outside a sandbox (library and local mode)."""

    model_config = cel(
        (
            "!has(self.memory) || self.memory.matches('" + re2(MEMORY_PATTERN) + "')",
            "memory: a quantity such as 256Mi, 1Gi or 500M",
        ),
        (
            "!has(self.cpu) || self.cpu.matches('" + re2(CPU_PATTERN).replace("\\", "\\\\") + "')",
            "cpu: cores (1, 0.5) or millicores (500m)",
        ),
    )

    memory: str | None = Field(
        default=None,
        max_length=32,
        pattern=MEMORY_PATTERN,
        description="Memory limit: `256Mi`, `1Gi`, `500M` (at least 4Mi); over it the kernel "
        "kills the daemon (OOMKilled).",
    )
    cpu: str | None = Field(
        default=None,
        max_length=32,
        pattern=CPU_PATTERN,
        description="CPU limit: `500m`, `1`, `1.5` (at least 1m).",
    )
    pids: int | None = Field(
        default=None, ge=1, le=MAX_PIDS, description="Most processes and threads at once."
    )

    @field_validator("memory", "cpu", mode="before")
    @classmethod
    def _plain_numbers(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `cpu: 1` / `memory: 1048576` in YAML, as Kubernetes allows
        return value

    @field_validator("memory")
    @classmethod
    def _memory_range(cls, value: str | None) -> str | None:
        if value is not None and parse_quantity(value) < MIN_MEMORY:
            raise ValueError(f"{value!r} is below the minimum of 4Mi")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu_range(cls, value: str | None) -> str | None:
        if value is not None and parse_quantity(value) < parse_quantity("1m"):
            raise ValueError(f"{value!r} is below the minimum of 1m")
        return value

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else math.ceil(parse_quantity(self.memory))

    @property
    def cpu_millicores(self) -> int | None:
        return None if self.cpu is None else math.ceil(parse_quantity(self.cpu) * 1000)


class LogSpec(CamelModel):
    """Where stdout/stderr go and how the log file is rotated."""

    max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=MAX_LOG_BYTES,
        description="Rotate the log file before it exceeds this size (at most 1Gi).",
    )
    backups: int = Field(default=3, ge=0, le=100, description="Rotated files to keep.")


class DaemonSpec(CamelModel):
    """A process started detached in its own session, never through a shell."""

    model_config = cel(
        (
            "has(self.command) != has(self.python)",
            "daemon: set exactly one of command or python",
        ),
    )

    command: list[Annotated[str, Field(max_length=65536)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="argv list; `$(PORT)` and `$(VAR)` expand Kubernetes-style, `$$` escapes.",
    )
    python: PythonCallable | None = Field(
        default=None, description="Run a Python callable in a fresh interpreter instead."
    )
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables.")
    working_dir: str | None = Field(
        default=None, max_length=4096, description="Working directory (default: runtime dir)."
    )
    silent: bool = Field(default=False, description="Discard stdout/stderr instead of logging.")
    blocking: bool = Field(
        default=False,
        description="Run in the caller's process and block until it exits (library use).",
    )
    singleton: bool = Field(
        default=False,
        description="Keep runtime files directly in the runtime root, not a per-service dir.",
    )
    stop_signal: str = Field(
        default="SIGTERM", pattern=SIGNAL_PATTERN, description="Signal sent to stop."
    )
    stop_grace_period_seconds: float = Field(
        default=10, ge=0, le=3600, description="Wait this long after stopSignal, then SIGKILL."
    )
    log: LogSpec = Field(default_factory=LogSpec, description="Log file rotation.")
    resources: DaemonResources | None = Field(
        default=None,
        description="Memory, CPU and process limits, enforced when the daemon runs in a "
        "sandbox (capped by the sandbox's ceilings).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DaemonSpec:
        if (self.command is None) == (self.python is None):
            raise ValueError("daemon: set exactly one of command or python")
        return self
