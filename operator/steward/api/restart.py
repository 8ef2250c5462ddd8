"""Restart policy and crash back-off, as the kubelet does it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel


class RestartPolicy(StrEnum):
    """When an exited service is started again."""

    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class BackoffSpec(CamelModel):
    """Crash-loop back-off: initial delay doubling to a cap, reset after a stable run."""

    model_config = cel(
        (
            "(has(self.maxSeconds) ? self.maxSeconds : 300.0) >= "
            "(has(self.initialSeconds) ? self.initialSeconds : 10.0)",
            "backoff: maxSeconds must be >= initialSeconds",
        ),
    )

    initial_seconds: float = Field(default=10, ge=0, le=3600, description="First delay.")
    max_seconds: float = Field(default=300, ge=0, le=86400, description="Delay cap.")
    reset_after_seconds: float = Field(
        default=600, ge=0, le=86400, description="Running this long resets the delay."
    )

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSpec:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("backoff: maxSeconds must be >= initialSeconds")
        return self
