"""Drift: a periodic ``plan -detailed-exitcode`` in the background, corrected or reported.

observe() asks ``maybe_check`` whether the interval has elapsed since the
last apply or check; if so a daemon thread runs the plan as a sequence of its
own (never waiting: an apply or a stop takes precedence and preempts it).
Exit 2 means drifted: re-applied when ``driftDetection.action`` is Reapply,
otherwise reported. Every outcome is recorded for status.
"""

from __future__ import annotations

import threading
import time

from steward.api import reasons as R
from steward.api.terraform import DriftAction
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.terraform.apply import Applier
from steward.runtimes.terraform.commands import Commands
from steward.runtimes.terraform.diag import Reason
from steward.runtimes.terraform.sequence import Sequencer
from steward.runtimes.terraform.session import CHECKING, CORRECTING, Session, now
from steward.runtimes.terraform.status import plan_summary
from steward.runtimes.terraform.workspace import Record


class DriftChecker:
    """Schedules and runs the service's drift checks."""

    def __init__(
        self, session: Session, sequencer: Sequencer, commands: Commands, applier: Applier
    ) -> None:
        self.s = session
        self.sequencer = sequencer
        self.commands = commands
        self.applier = applier
        self.thread: threading.Thread | None = None

    def maybe_check(self, rec: Record) -> None:
        """Start a background check when one is due and none runs."""
        s = self.s
        dd = s.spec.drift_detection
        if not dd.enabled or s.closed:
            return
        last = rec.last_apply
        since = max(rec.drift.checked_epoch, last.finished_epoch if last else 0.0)
        if time.time() - since < dd.interval_seconds:
            return
        t = self.thread
        if t is not None and t.is_alive():
            return
        self.thread = threading.Thread(
            target=self.check, name=f"terraform-drift-{s.ctx.identity.slug}", daemon=True
        )
        self.thread.start()

    def check(self, background: bool = True) -> None:
        """``plan -detailed-exitcode``: 0 in sync, 2 drifted (re-apply or report), else an error."""
        s = self.s
        try:
            with self.sequencer.sequence(CHECKING, wait=not background) as got:
                if not got:
                    return
                env = self.applier.prepare_and_init()
                args = [
                    "plan",
                    "-detailed-exitcode",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=0s",
                ]
                res = self.commands.run("plan", args, env, background=background)
                if res.exit_code == 2 and s.spec.drift_detection.action is DriftAction.REAPPLY:
                    with s.state_lock:
                        s.activity = CORRECTING
                    s.log.line("--- drift detected: re-applying")
                    self.applier.apply()
                    self._set("corrected", plan_summary(res.stdout), corrected=True)
                elif res.exit_code == 2:
                    self._set("detected", plan_summary(res.stdout), reason=Reason.DRIFT_DETECTED)
                elif res.exit_code == 0:
                    self._set("none", "")
                else:
                    self.commands.check(res)
        except RuntimeFailure as exc:
            if exc.reason in (Reason.INTERRUPTED, Reason.BUSY):
                return  # preempted: the next observe schedules another check
            self._set("error", str(exc), reason=exc.reason)
        except Exception as exc:  # a background thread has nobody else to tell
            self._set(
                "error",
                f"drift check failed: {type(exc).__name__}: {exc}",
                reason=R.DRIFT_CHECK_FAILED,
            )

    def join(self, timeout: float) -> None:
        t = self.thread
        if t is not None:
            t.join(timeout)

    def _set(self, status: str, msg: str, reason: str = "", corrected: bool = False) -> None:
        s = self.s
        at = now()
        with s.state_lock:
            rec = s.record
            if corrected:
                rec.drift.corrections += 1
            rec.drift.status = status
            rec.drift.message = s.redact(msg)
            rec.drift.reason = reason
            rec.drift.checked_at = at.isoformat()
            rec.drift.checked_epoch = at.timestamp()
            s.ws.save(rec)
