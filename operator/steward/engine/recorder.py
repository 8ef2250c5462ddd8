"""What a user reads: state, the Ready/Reconciling/Stalled conditions and Events.

Every status change goes through :meth:`StatusRecorder.apply` with a
:class:`~steward.engine.decide.Decision`, so conditions always carry
``observedGeneration`` and ``lastTransitionTime``, an Event is sent on each
transition, and a Warning goes out once per distinct failure (the part of the
message before the retry time), not once per attempt of a crash loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from steward.api import reasons as R
from steward.api.state import ServiceState
from steward.api.status import ManagedServiceStatus
from steward.engine.decide import Action, Decision
from steward.engine.state import EngineState

log = logging.getLogger("steward.engine")

EventSink = Callable[[str, str, str], None]
"""(type "Normal"|"Warning", reason, message)."""

BACKOFF_MARK = "; back-off "
"""Separates a failure from the retry time in messages (Events compare the part before it)."""


def ready_message(probed: bool) -> str:
    """Ready's text when the decision carries none (the steady-state check compares it)."""
    return "service is running and healthy" if probed else "service is running"


DEFAULT_MESSAGES = {
    R.STARTING: "waiting for the service to start",
    R.RESTARTING: "starting again after the back-off",
    R.UPDATING: "applying the changed spec",
    R.STOPPED: "adminState is inactive",
}


def stable(message: str) -> str:
    """The part of a message that names the failure, without when it is retried."""
    return message.split(BACKOFF_MARK, 1)[0]


def log_event(type_: str, reason: str, message: str) -> None:
    """The library's default sink: Events become log records."""
    log.log(logging.WARNING if type_ == "Warning" else logging.INFO, "%s: %s", reason, message)


class StatusRecorder:
    """Applies decisions to one service's status and sends its Events."""

    def __init__(
        self,
        status: ManagedServiceStatus,
        engine: EngineState,
        events: EventSink,
        save: Callable[[], None],
    ) -> None:
        self.status = status
        self.engine = engine
        self.events = events
        self._save = save
        self.generation: int | None = None
        self.flavor = ""
        self.probed = False
        self._held: tuple[Decision, str] | None = None

    def apply(self, decision: Decision, message: str = "", emit: bool = True) -> bool:
        """State, lastError and the three conditions from a decision; True if anything changed.

        ``emit=False`` holds the transition's Event back for ``release()`` to send or drop."""
        msg = message or decision.message
        before = self.status.condition("Ready")
        prev_reason = before.reason if before else None
        changed = self.status.update_state(decision.state)
        if decision.state is ServiceState.ERROR and msg:
            self.status.last_error = stable(msg)  # the failure; when it is retried is beside it
        elif decision.ready:
            self.status.clear_error()
        text = msg or DEFAULT_MESSAGES.get(decision.reason, "")
        if decision.ready and not text:
            text = ready_message(self.probed)
        gen = self.generation
        ready: Literal["True", "False"] = "True" if decision.ready else "False"
        cond_changed = self.status.set_condition("Ready", ready, decision.reason, text, gen)
        reconciling: Literal["True", "False"] = "True" if decision.reconciling else "False"
        cond_changed |= self.status.set_condition(
            R.RECONCILING,
            reconciling,
            decision.reason if decision.reconciling else R.READY if decision.ready else "Idle",
            text if decision.reconciling else "",
            gen,
        )
        stalled: Literal["True", "False"] = "True" if decision.stalled else "False"
        cond_changed |= self.status.set_condition(
            R.STALLED,
            stalled,
            decision.reason if decision.stalled else "NotStalled",
            text if decision.stalled else "",
            gen,
        )
        self.status.observed_generation = gen
        self.status.flavor = self.flavor
        if decision.ready:
            self.engine.warned = []
        if changed or (cond_changed and prev_reason != decision.reason):
            if emit:
                self._emit(decision, text or decision.state.value)
            else:
                self._held = (decision, text or decision.state.value)
        if changed or cond_changed:
            self._save()
        return changed or cond_changed

    def release(self, send: bool) -> None:
        """Send (or drop) the Event ``apply(emit=False)`` held back."""
        held, self._held = self._held, None
        if held is not None and send:
            self._emit(*held)

    def fail(self, reason: str, message: str) -> None:
        """A failure outside the control loop's table (adoption, stop)."""
        self.apply(Decision(Action.NONE, ServiceState.ERROR, reason, message))

    def warn_once(self, reason: str, message: str) -> None:
        """A Warning for a failure not reported since the service was last Ready."""
        if self.engine.first_warning(stable(message)):
            self.events("Warning", reason, message)

    def _emit(self, decision: Decision, message: str) -> None:
        if decision.state is ServiceState.ERROR:
            self.warn_once(decision.reason, message)
        else:
            self.events("Normal", decision.reason, message)
