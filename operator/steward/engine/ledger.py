"""How runs ended, and when the next may start: the engine's bookkeeping of the back-off.

Every way a run ends goes through :meth:`RunLedger.ended`: an exit the runtime
reports (counted once), a start that failed, Steward's own stop. The restart
policy table (``decide.restarts``) says whether another run comes; if so the
kubelet back-off sets when, in both the engine state and ``status.nextRestartAt``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.status import ManagedServiceStatus, utcnow
from steward.engine.backoff import crashes_after_exit, restart_delay
from steward.engine.decide import LastRun, restarts, run_end_of
from steward.engine.state import EngineState
from steward.runtimes.base import Observation


class RunLedger:
    def __init__(self, engine: EngineState, status: ManagedServiceStatus) -> None:
        self.engine = engine
        self.status = status
        self.policy = RestartPolicy.ALWAYS
        self.backoff = BackoffSpec()

    def ended(self, last: LastRun, run_seconds: float | None = None) -> None:
        """Record how the last run ended; schedule the next one if the policy restarts it."""
        self.engine.last_run = last
        if restarts(self.policy, last):
            self.schedule(run_seconds)
        else:
            self.clear_schedule()

    def exit_reported(self, obs: Observation) -> bool:
        """Count an ended run the runtime reports; False if it was counted already."""
        # Not the message: a runtime may refine it later (Docker's late OOM flag).
        key = (obs.finished_at.isoformat() if obs.finished_at else "") + f"|{obs.exit_code}"
        if self.engine.accounted_exit == key:
            return False
        self.engine.accounted_exit = key
        self.status.last_exit_code = obs.exit_code
        self.status.finished_at = (
            obs.finished_at.replace(microsecond=0) if obs.finished_at else utcnow()
        )
        last = run_end_of(obs)
        if last is not None:
            run_seconds = None
            if obs.started_at and obs.finished_at:
                run_seconds = (obs.finished_at - obs.started_at).total_seconds()
            self.ended(last, run_seconds)
        return True

    def schedule(self, run_seconds: float | None) -> None:
        """Count a crash and set when the next start may happen (kubelet back-off)."""
        self.engine.crashes = crashes_after_exit(self.backoff, self.engine.crashes, run_seconds)
        at = time.time() + restart_delay(self.backoff, self.engine.crashes)
        self.engine.next_restart_at = at
        self.status.next_restart_at = datetime.fromtimestamp(at, UTC).replace(microsecond=0)

    def clear_schedule(self) -> None:
        self.engine.next_restart_at = None
        self.status.next_restart_at = None

    def started(self) -> None:
        """A run began: nothing waits, nothing ended."""
        self.clear_schedule()
        self.engine.last_run = None
