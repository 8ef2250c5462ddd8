"""Terraform runtime: a ManagedService is a Terraform apply, its outputs, its drift and its destroy.

``start`` applies (initialising only when the module, backend or binary
changed), ``observe`` reports the last apply from Steward's record and, when
the drift interval has elapsed, starts a background ``plan
-detailed-exitcode`` (correcting drift with an apply if the spec says so),
``stop`` interrupts whatever runs and destroys, ``adopt`` recognises an
earlier successful apply of the same spec.

Commands run one at a time per service (a thread lock in-process, a flock
across processes) as killable children; see terraform.sequence and
terraform.runner. Sensitive outputs stay in memory: only their names are
recorded or reported. This module answers the Runtime interface; the work is
done by the collaborators that share one terraform.session.Session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, ClassVar

from steward.api.state import ServiceState
from steward.api.terraform import TerraformBinary, TerraformSpec
from steward.runtimes.base import (
    Adoption,
    Capabilities,
    Fingerprint,
    NoPreviousRun,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
)
from steward.runtimes.terraform.apply import Applier
from steward.runtimes.terraform.binary import find_binary
from steward.runtimes.terraform.commands import Commands
from steward.runtimes.terraform.diag import Reason
from steward.runtimes.terraform.drift import DriftChecker
from steward.runtimes.terraform.inputs import resolve_inputs
from steward.runtimes.terraform.sequence import Sequencer
from steward.runtimes.terraform.session import (
    APPLYING,
    CORRECTING,
    DESTROYING,
    Session,
)
from steward.runtimes.terraform.status import details as status_details
from steward.runtimes.terraform.status import parse_time
from steward.runtimes.terraform.workspace import DriftRecord, Record

__all__ = ["FORCE_GRACE", "TerraformRuntime"]

FORCE_GRACE = 2.0
"""Seconds a forced stop still gives Terraform to write its state after SIGTERM."""


class TerraformRuntime(Runtime):
    """A Terraform module as a service."""

    flavor = "terraform"
    capabilities: ClassVar[Capabilities] = Capabilities(
        updates_in_place=True, endpoint_from_outputs=True, has_outputs=True
    )
    """A changed spec converges with another ``start()`` (an apply), no destroy first; the
    endpoint is an output; outputs can be published."""

    @classmethod
    def fingerprint(cls) -> Fingerprint:
        """A Terraform that ``binary: auto`` would pick is there."""
        try:
            binary = find_binary(TerraformBinary.AUTO)
        except RuntimeFailure as exc:
            return Fingerprint(False, exc.reason, str(exc))
        return Fingerprint(True, "BinaryFound", f"{binary.kind} {binary.version} at {binary.path}")

    def __init__(self, spec: TerraformSpec, ctx: RuntimeContext) -> None:
        self.session = Session(spec, ctx)
        super().__init__(spec, ctx)
        s = self.session
        self.ws = s.ws
        self.log = s.log
        self.runner = s.runner
        self._sequencer = Sequencer(s)
        self._commands = Commands(s)
        self._applier = Applier(s, self._commands)
        self._drift = DriftChecker(s, self._sequencer, self._commands, self._applier)

    # The engine swaps ``ctx`` (a new port, re-resolved env); the collaborators read it
    # from the session, so spec and context live there.
    @property
    def spec(self) -> TerraformSpec:
        return self.session.spec

    @spec.setter
    def spec(self, value: TerraformSpec) -> None:
        self.session.spec = value

    @property
    def ctx(self) -> RuntimeContext:
        return self.session.ctx

    @ctx.setter
    def ctx(self, value: RuntimeContext) -> None:
        self.session.ctx = value

    @property
    def record(self) -> Record:
        """Steward's record of this service's Terraform (as last loaded or written)."""
        return self.session.record

    @record.setter
    def record(self, value: Record) -> None:
        self.session.record = value

    # ================================================================ interface
    def start(self) -> None:
        """Apply now (blocking; ``stop()`` from another thread interrupts it)."""
        self._sequencer.preempt(stopping=False)
        with self._sequencer.sequence(APPLYING):
            self._applier.apply()

    def stop(self, force: bool = False, grace: float | None = None) -> None:
        """Interrupt what runs, then destroy (unless destroyOnStop is false). Idempotent.

        Even ``force`` gives a running Terraform FORCE_GRACE seconds after SIGTERM:
        killed outright it cannot record what it already created, and those
        resources would be orphaned outside any state.
        """
        s = self.session
        if force:
            grace = FORCE_GRACE
        elif grace is None:
            grace = s.spec.stop_grace_period_seconds
        interrupted = s.runner.cancel(grace)
        if interrupted is not None:
            s.log.line(f"--- stop requested: interrupting terraform {interrupted.command}")
        self._sequencer.interrupt_foreign(grace)
        with self._sequencer.sequence(DESTROYING):
            rec = s.record
            if s.spec.destroy_on_stop and rec.applied:
                self._applier.destroy()
            elif rec.applied:
                s.log.line("--- stopped; destroyOnStop is false: resources and state kept")
            with s.state_lock:
                rec.stopped = True
                rec.drift = DriftRecord()
                s.ws.save(rec)

    def inputs_digest(self) -> str:
        """varsFrom values as resolved now, hashed (never stored in clear)."""
        if not self.spec.vars_from:
            return ""
        inputs = resolve_inputs(self.spec, self.ctx)
        blob = json.dumps([inputs.tfvars, inputs.env], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def interrupt(self) -> None:
        """SIGTERM the running terraform command (then SIGKILL after the grace period)."""
        if self.runner.cancel(self.spec.stop_grace_period_seconds) is not None:
            self.log.line("--- interrupted: a stop was requested")

    def observe(self) -> Observation:
        """From the record (cheap); schedules a background drift check when one is due."""
        s = self.session
        with s.state_lock:
            activity = s.activity
            if activity is None and s.ws.changed():
                s.record = s.ws.load()  # another process moved on
            # A consistent view without a deep copy: the last apply (and the lock and
            # binary facts) are replaced when they change, never edited; drift is edited.
            rec = s.record.model_copy(update={"drift": s.record.drift.model_copy()})
        details = status_details(rec, s.spec)
        running = s.runner.running
        if running is not None:
            details["command"] = {
                "name": running.command,
                "pid": running.pid,
                "startedAt": running.started_at.isoformat(timespec="seconds"),
            }
        if activity == APPLYING:
            return Observation(ServiceState.PENDING_STARTUP, "terraform apply running", details)
        if activity == DESTROYING:
            return Observation(ServiceState.PENDING_SHUTDOWN, "terraform destroy running", details)
        if activity is None:
            foreign = self._sequencer.foreign_holder()
            if foreign is not None:
                details["lock"] = {"holder": foreign.describe(alive=True)}
                state = (
                    ServiceState.PENDING_SHUTDOWN
                    if foreign.command == "destroy"
                    else ServiceState.PENDING_STARTUP
                )
                msg = f"terraform {foreign.command} (pid {foreign.pid}) of an earlier Steward process is still running"
                return Observation(state, msg, details, reason=Reason.BUSY)
        last = rec.last_apply
        if last is None or rec.stopped:
            msg = "destroyed" if rec.stopped and not rec.applied else ""
            if rec.stopped and rec.applied:
                msg = "stopped; resources kept (destroyOnStop is false)"
            return Observation(ServiceState.INACTIVE, msg, details)
        started = parse_time(last.started_at)
        finished = parse_time(last.finished_at)
        if not last.ok:
            return Observation(
                ServiceState.ERROR,
                last.message,
                details,
                exit_code=last.exit_code if last.exit_code is not None else 1,
                started_at=started,
                finished_at=finished,
                reason=last.reason,
            )
        if activity is None:
            self._drift.maybe_check(rec)
        drift = rec.drift
        if drift.status == "error" and activity is None:
            return Observation(
                ServiceState.ERROR,
                drift.message,
                details,
                exit_code=1,
                started_at=started,
                finished_at=parse_time(drift.checked_at),
                reason=drift.reason,
            )
        msg, reason = "", ""
        if drift.status == "detected":
            msg, reason = drift.message, Reason.DRIFT_DETECTED
        elif activity == CORRECTING:
            msg = "correcting drift: terraform apply running"
        return Observation(
            ServiceState.ACTIVE,
            msg,
            details,
            started_at=started,
            endpoint_uri=last.endpoint_uri,
            reason=reason,
        )

    def logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        """Every command's output (redacted when written), oldest first."""
        if previous:
            raise NoPreviousRun(
                f"{self.ctx.identity.key} is a Terraform service: its one log holds every "
                "command of every apply, so there is no previous run to show"
            )
        s = self.session
        return s.log.lines(
            tail, follow, busy=lambda: s.activity is not None or s.runner.running is not None
        )

    def adopt(self) -> Adoption:
        """A recorded successful apply of this spec is adopted as is: no re-apply."""
        s = self.session
        with s.state_lock:
            s.record = rec = s.ws.load()
        last = rec.last_apply
        if last is None or not last.ok or rec.stopped:
            return Adoption.NOTHING
        return Adoption.ADOPTED if last.spec_hash == s.spec_hash() else Adoption.OUTDATED

    def close(self) -> None:
        """Stop background drift work (gracefully); the applied resources stay."""
        self.session.closed = True
        self._sequencer.preempt(stopping=True)
        self._drift.join(self.spec.stop_grace_period_seconds + 10)
        self.session.log.close()

    # ================================================================ extras
    def redact(self, text: str) -> str:
        """The context's secrets, varsFrom Secret values and sensitive output values -> ***."""
        return self.session.redact(text)

    def outputs(self, include_sensitive: bool = False) -> dict[str, Any]:
        """Output values; sensitive ones (for an operator writing a Secret) read anew if needed."""
        s = self.session
        last = s.record.last_apply
        values = dict(last.outputs) if last and last.ok else {}
        if not include_sensitive:
            return values
        names = set(last.sensitive_outputs) if last else set()
        if names - set(s.sensitive):
            with self._sequencer.sequence("reading outputs"):
                self._applier.read_outputs()
        return {**values, **s.sensitive}

    def check_drift(self) -> str:
        """Run a drift check now, in this thread; returns the drift status."""
        self._drift.check(background=False)
        return self.session.record.drift.status
