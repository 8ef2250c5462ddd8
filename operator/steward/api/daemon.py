"""Spec of a local daemon process (ZenML's LocalDaemonService)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel
from steward.api.common import EnvVar, PythonCallable

SIGNAL_PATTERN = r"^SIG[A-Z0-9]+$"


class LogSpec(CamelModel):
    """Where stdout/stderr go and how the log file is rotated."""

    max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Rotate the log file above this size."
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

    @model_validator(mode="after")
    def _exactly_one(self) -> DaemonSpec:
        if (self.command is None) == (self.python is None):
            raise ValueError("daemon: set exactly one of command or python")
        return self
