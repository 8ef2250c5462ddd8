"""Service states and the seed's operational status semantics."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from steward.api.base import CamelModel


class ServiceState(StrEnum):
    """Operational state of a service (ZenML's ServiceState, same values)."""

    INACTIVE = "inactive"
    ACTIVE = "active"
    PENDING_STARTUP = "pending_startup"
    PENDING_SHUTDOWN = "pending_shutdown"
    ERROR = "error"
    SCALED_TO_ZERO = "scaled_to_zero"


class AdminState(StrEnum):
    """What the user asked for: running or not."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class ServiceStatus(CamelModel):
    """Operational state with the previous state and the last error."""

    state: ServiceState = Field(
        default=ServiceState.INACTIVE, description="Current operational state."
    )
    last_state: ServiceState = Field(
        default=ServiceState.INACTIVE,
        description="Operational state before the last transition.",
    )
    last_error: str = Field(
        default="", description="Error seen by the last status update; empty when none."
    )

    def update_state(self, new_state: ServiceState | None = None, error: str = "") -> bool:
        """Move to ``new_state`` and/or record ``error``; True if the state changed.

        Same semantics as the seed: last_state only moves on a real change and
        an empty error never clears a recorded one (use ``clear_error``).
        """
        changed = False
        if new_state is not None and self.state != new_state:
            self.last_state = self.state
            self.state = new_state
            changed = True
        if error:
            self.last_error = error
        return changed

    def clear_error(self) -> None:
        """Forget the last error."""
        self.last_error = ""
