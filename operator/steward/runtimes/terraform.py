"""Terraform runtime: a ManagedService is a Terraform apply, its outputs, its drift and its destroy.

``start`` applies (initialising only when the module, backend or binary
changed), ``observe`` reports the last apply from Steward's record and, when
the drift interval has elapsed, starts a background ``plan
-detailed-exitcode`` (correcting drift with an apply if the spec says so),
``stop`` interrupts whatever runs and destroys, ``adopt`` recognises an
earlier successful apply of the same spec.

Commands run one at a time per service (a thread lock in-process, a flock
across processes) as killable children; see terraform_runner. Sensitive
outputs stay in memory: only their names are recorded or reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from steward.api.state import ServiceState
from steward.api.terraform import DriftAction, TerraformSpec
from steward.runtimes.base import (
    Adoption,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
    spec_hash,
)
from steward.runtimes.terraform_binary import Binary, find_binary
from steward.runtimes.terraform_diag import (
    LockInfo,
    Reason,
    classify,
    errors,
    lock_info,
    message,
)
from steward.runtimes.terraform_inputs import (
    VarsFromResolver,
    backend_config,
    command_env,
    resolve_inputs,
    set_vars_from_resolver,
)
from steward.runtimes.terraform_lock import Holder, same_process, stale_local_lock_info
from steward.runtimes.terraform_log import TerraformLog
from steward.runtimes.terraform_runner import Result, Runner
from steward.runtimes.terraform_status import details as status_details
from steward.runtimes.terraform_status import parse_time, plan_summary, redact_json, strings
from steward.runtimes.terraform_workspace import (
    ApplyRecord,
    DriftRecord,
    Record,
    Workspace,
    checksum,
    digest,
)

__all__ = ["TerraformRuntime", "VarsFromResolver", "set_vars_from_resolver"]

FORCE_GRACE = 2.0
"""Seconds a forced stop still gives Terraform to write its state after SIGTERM."""
MIN_SECRET_LEN = 4
"""Shorter sensitive values are not redacted: they would mangle every log line."""

APPLYING, DESTROYING, CHECKING, CORRECTING = (
    "applying",
    "destroying",
    "checking drift",
    "correcting drift",
)


def _now() -> datetime:
    return datetime.now(UTC)


class TerraformRuntime(Runtime):
    """A Terraform module as a service."""

    flavor = "terraform"
    updates_in_place: ClassVar[bool] = True
    """A changed spec converges with another ``start()`` (an apply); no destroy needed first."""

    spec: TerraformSpec

    def __init__(self, spec: TerraformSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.ws = Workspace(ctx.runtime_dir)
        self.record: Record = self.ws.load()
        self.log = TerraformLog(self.ws.log_path)
        self.runner = Runner(self.log, self.ws.holder_path, self.redact)
        self._sequence_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._activity: str | None = None
        self._drift_thread: threading.Thread | None = None
        self._binary: Binary | None = None
        self._secrets: set[str] = set()
        self._sensitive: dict[str, Any] = {}
        self._last_outputs: dict[str, Any] = {}
        self._env: dict[str, str] = {}
        self._closed = False

    # ================================================================ interface
    def start(self) -> None:
        """Apply now (blocking; ``stop()`` from another thread interrupts it)."""
        self._preempt(stopping=False)
        with self._sequence(APPLYING):
            self._apply()

    def stop(self, force: bool = False, grace: float | None = None) -> None:
        """Interrupt what runs, then destroy (unless destroyOnStop is false). Idempotent.

        Even ``force`` gives a running Terraform FORCE_GRACE seconds after SIGTERM:
        killed outright it cannot record what it already created, and those
        resources would be orphaned outside any state.
        """
        if force:
            grace = FORCE_GRACE
        elif grace is None:
            grace = self.spec.stop_grace_period_seconds
        interrupted = self.runner.cancel(grace)
        if interrupted is not None:
            self.log.line(f"--- stop requested: interrupting terraform {interrupted.command}")
        self._interrupt_foreign(grace)
        with self._sequence(DESTROYING):
            rec = self.record
            if self.spec.destroy_on_stop and rec.applied:
                self._destroy()
            elif rec.applied:
                self.log.line("--- stopped; destroyOnStop is false: resources and state kept")
            with self._state_lock:
                rec.stopped = True
                rec.drift = DriftRecord()
                self.ws.save(rec)

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
        with self._state_lock:
            activity = self._activity
            if activity is None:
                self.record = self.ws.load()  # another process may have moved on
            rec = self.record.model_copy(deep=True)
        details = status_details(rec, self.spec)
        running = self.runner.running
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
            foreign = self._foreign_holder()
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
            self._maybe_check_drift(rec)
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

    def logs(self, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """Every command's output (redacted when written), oldest first."""
        return self.log.lines(
            tail, follow, busy=lambda: self._activity is not None or self.runner.running is not None
        )

    def adopt(self) -> Adoption:
        """A recorded successful apply of this spec is adopted as is: no re-apply."""
        with self._state_lock:
            self.record = rec = self.ws.load()
        last = rec.last_apply
        if last is None or not last.ok or rec.stopped:
            return Adoption.NOTHING
        return Adoption.ADOPTED if last.spec_hash == self._spec_hash() else Adoption.OUTDATED

    def close(self) -> None:
        """Stop background drift work (gracefully); the applied resources stay."""
        self._closed = True
        self._preempt(stopping=True)
        t = self._drift_thread
        if t is not None:
            t.join(self.spec.stop_grace_period_seconds + 10)

    # ================================================================ extras
    def redact(self, text: str) -> str:
        """The context's secrets, varsFrom Secret values and sensitive output values -> ***."""
        text = self.ctx.redact(text)
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def outputs(self, include_sensitive: bool = False) -> dict[str, Any]:
        """Output values; sensitive ones (for an operator writing a Secret) read anew if needed."""
        last = self.record.last_apply
        values = dict(last.outputs) if last and last.ok else {}
        if not include_sensitive:
            return values
        names = set(last.sensitive_outputs) if last else set()
        if names - set(self._sensitive):
            with self._sequence("reading outputs"):
                self._read_outputs(self._prepare()[1])
        return {**values, **self._sensitive}

    def check_drift(self) -> str:
        """Run a drift check now, in this thread; returns the drift status."""
        self._drift_check(background=False)
        return self.record.drift.status

    # ================================================================ sequences
    @contextlib.contextmanager
    def _sequence(self, activity: str, wait: bool = True) -> Iterator[bool]:
        """One command sequence at a time: this process (thread lock) and others (flock)."""
        if not self._sequence_lock.acquire(blocking=wait):
            yield False
            return
        try:
            self.runner.begin()
            fd = self.ws.try_lock()
            if fd is None:
                holder = Holder.load(self.ws.holder_path)
                who = f" (terraform {holder.command}, pid {holder.pid})" if holder else ""
                raise RuntimeFailure(
                    f"another Steward process is running Terraform for this service{who}",
                    reason=Reason.BUSY,
                )
            try:
                self._take_over_from_dead_run()
                with self._state_lock:
                    self.record = self.ws.load()
                    self._activity = activity
                yield True
            finally:
                with self._state_lock:
                    self._activity = None
                Workspace.unlock(fd)
        finally:
            self._sequence_lock.release()

    def _preempt(self, stopping: bool) -> None:
        """Cancel background work in the way: a drift plan always, a drift correction on stop."""
        activity = self._activity
        if activity == CHECKING or (stopping and activity == CORRECTING):
            self.runner.cancel(self.spec.stop_grace_period_seconds)

    def _interrupt_foreign(self, grace: float) -> None:
        """Stop a run an earlier (dead) Steward process left going, as our own would be stopped.

        Only the very process recorded (PID and start time) on this host is
        signalled: SIGTERM to its group, SIGKILL after ``grace``.
        """
        holder = self._foreign_holder()
        if holder is None or holder.pid is None or not holder.local:
            return
        if same_process(holder.steward_pid, holder.steward_start):
            return  # its Steward lives: that process owns the run (stop it there)
        self.log.line(
            f"--- stop requested: interrupting terraform {holder.command} (pid {holder.pid})"
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(holder.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while holder.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if holder.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(holder.pid, signal.SIGKILL)

    def _take_over_from_dead_run(self) -> None:
        """A holder file left behind: its run is still going (refuse) or died (clean up)."""
        holder = Holder.load(self.ws.holder_path)
        if holder is None:
            return
        if holder.alive():
            raise RuntimeFailure(
                f"terraform {holder.command} (pid {holder.pid}, started {holder.started_at} on "
                f"{holder.host}) of an earlier Steward process is still running",
                reason=Reason.BUSY,
            )
        self.log.line(
            f"--- terraform {holder.command} (pid {holder.pid}) died before finishing; "
            "its state lock, if any, may be stale"
        )
        rec = self.ws.load()
        rec.dead_holder = holder.describe(alive=False) | {"raw": asdict(holder)}
        self.ws.save(rec)
        info = stale_local_lock_info(self.ws.state_dir)
        if info is not None and self.spec.backend.kind == "local":
            info.unlink(missing_ok=True)
            self.log.line(f"--- removed {info.name} left by the dead run")
        self.ws.holder_path.unlink(missing_ok=True)

    # ================================================================ apply
    def _prepare(self) -> tuple[Binary, dict[str, str], str, dict[str, Any]]:
        """Binary, module copy, generated files and the command environment."""
        binary = self._binary = find_binary(self.spec.binary, self.spec.binary_path)
        files = self.ws.module_files(self.spec.module)
        module_sum = checksum(files)
        inputs = resolve_inputs(self.spec, self.ctx)
        self._secrets |= {s for s in inputs.secrets if s}
        backend = backend_config(self.spec, self.ctx, self.ws.state_dir)
        self.ws.root.mkdir(parents=True, exist_ok=True)
        self.ws.state_dir.mkdir(exist_ok=True)
        if self.ws.materialize(files, module_sum, self.record.module_checksum):
            self.log.line(f"--- module copied ({len(files)} files, checksum {module_sum})")
        with self._state_lock:
            self.record.module_checksum = module_sum
        self.ws.write_generated(backend, inputs.tfvars)
        env = self._env = command_env(inputs, self.ws.data_dir)
        return binary, env, module_sum, backend

    def _apply(self) -> None:
        """prepare, init if needed, apply, read outputs; any failure is recorded for observe()."""
        started = _now()
        try:
            binary, env, module_sum, backend = self._prepare()
            self._init_if_needed(binary, env, module_sum, backend)
            with self._state_lock:
                self.record.applied = True
                self.record.stopped = False
                self.ws.save(self.record)
            started = _now()
            res = self._run("apply", ["apply", "-auto-approve", "-input=false", "-no-color"], env)
            self._check(res)
            self._read_outputs(env)
            endpoint = self._endpoint_uri()
        except RuntimeFailure as exc:
            self._record_apply(False, started, reason=exc.reason, message=str(exc))
            raise
        self._record_apply(True, started, endpoint_uri=endpoint)

    def _record_apply(
        self,
        ok: bool,
        started: datetime,
        reason: str = "",
        message: str = "",
        endpoint_uri: str | None = None,
    ) -> None:
        finished = _now()
        previous = self.record.last_apply
        outputs = dict(self._last_outputs) if ok else (previous.outputs if previous else {})
        with self._state_lock:
            rec = self.record
            rec.last_apply = ApplyRecord(
                ok=ok,
                spec_hash=self._spec_hash(),
                started_at=started.isoformat(),
                finished_at=finished.isoformat(),
                finished_epoch=finished.timestamp(),
                seconds=round((finished - started).total_seconds(), 3),
                exit_code=0 if ok else 1,
                reason=reason,
                message=self.redact(message),
                outputs=outputs,
                sensitive_outputs=sorted(self._sensitive) if ok else [],
                endpoint_uri=endpoint_uri,
            )
            if ok:
                rec.stuck_lock = None
                rec.dead_holder = None
                corrections = rec.drift.corrections
                rec.drift = DriftRecord(
                    checked_at=finished.isoformat(),
                    checked_epoch=finished.timestamp(),
                    status="none",
                    corrections=corrections,
                )
            self.ws.save(rec)

    def _init_if_needed(
        self, binary: Binary, env: dict[str, str], module_sum: str, backend: dict[str, Any]
    ) -> None:
        """``init`` only when the module, the backend or the binary changed (or was never done)."""
        backend_hash = digest(backend)
        key = digest(
            {"module": module_sum, "backend": backend_hash, "binary": [binary.kind, binary.version]}
        )
        rec = self.record
        if key == rec.init_key and (self.ws.data_dir / "terraform.tfstate").exists():
            return
        args = ["init", "-input=false", "-no-color"]
        if rec.backend_hash and rec.backend_hash != backend_hash and self.ws.data_dir.exists():
            args += ["-migrate-state", "-force-copy"]
        res = self._run("init", args, env)
        self._check(res)
        with self._state_lock:
            rec.init_count += 1
            rec.init_key = key
            rec.backend_hash = backend_hash
            rec.binary = binary.describe()
            self.ws.save(rec)

    def _read_outputs(self, env: dict[str, str]) -> None:
        """``output -json``: values kept in memory, sensitive names recorded, stdout never logged."""
        res = self._run("output", ["output", "-json", "-no-color"], env, log_stdout=False)
        self._check(res)
        try:
            data: dict[str, Any] = json.loads(res.stdout or "{}")
        except ValueError as exc:
            raise RuntimeFailure(
                f"terraform output -json printed something else than JSON: {exc}",
                reason=Reason.failed("output"),
            ) from None
        plain: dict[str, Any] = {}
        sensitive: dict[str, Any] = {}
        for name, out in data.items():
            if out.get("sensitive"):
                sensitive[name] = out.get("value")
            else:  # not marked sensitive, but it may still echo a Secret's value
                plain[name] = redact_json(out.get("value"), self.redact)
        self._sensitive = sensitive
        self._secrets |= {
            s for v in sensitive.values() for s in strings(v) if len(s) >= MIN_SECRET_LEN
        }
        self._last_outputs = plain

    def _endpoint_uri(self) -> str | None:
        name = self.spec.endpoint_output
        if name is None:
            return None
        if name in self._sensitive:
            raise RuntimeFailure(
                f"endpointOutput {name!r} is sensitive; status is public, so it cannot be the endpoint",
                reason=Reason.OUTPUT_SENSITIVE,
            )
        if name not in self._last_outputs:
            known = ", ".join(sorted(self._last_outputs)) or "none"
            raise RuntimeFailure(
                f"endpointOutput {name!r} is not an output of the module (outputs: {known})",
                reason=Reason.OUTPUT_MISSING,
            )
        value = self._last_outputs[name]
        if not isinstance(value, str) or not value:
            raise RuntimeFailure(
                f"endpointOutput {name!r} must be a non-empty string, got {type(value).__name__}",
                reason=Reason.OUTPUT_INVALID,
            )
        return value

    # ================================================================ destroy
    def _destroy(self) -> None:
        """Destroy with the module copy and variables of the last apply when there is one.

        The spec may have changed since (an OUTDATED adoption is stopped with the
        new spec): the old configuration holds the destroy-time provisioners of
        the resources that exist, and its backend holds their state.
        """
        if self.record.init_key and (self.ws.data_dir / "terraform.tfstate").exists():
            self._binary = find_binary(self.spec.binary, self.spec.binary_path)
            inputs = resolve_inputs(self.spec, self.ctx)
            self._secrets |= {s for s in inputs.secrets if s}
            env = self._env = command_env(inputs, self.ws.data_dir)
        else:
            binary, env, module_sum, backend = self._prepare()
            self._init_if_needed(binary, env, module_sum, backend)
        res = self._run("destroy", ["destroy", "-auto-approve", "-input=false", "-no-color"], env)
        self._check(res)
        with self._state_lock:
            rec = self.record
            rec.applied = False
            rec.last_apply = None
            rec.stuck_lock = None
            rec.dead_holder = None
            self.ws.save(rec)
        self._sensitive = {}
        self._last_outputs = {}

    # ================================================================ drift
    def _maybe_check_drift(self, rec: Record) -> None:
        dd = self.spec.drift_detection
        if not dd.enabled or self._closed:
            return
        last = rec.last_apply
        since = max(rec.drift.checked_epoch, last.finished_epoch if last else 0.0)
        if time.time() - since < dd.interval_seconds:
            return
        t = self._drift_thread
        if t is not None and t.is_alive():
            return
        self._drift_thread = threading.Thread(
            target=self._drift_check, name=f"terraform-drift-{self.ctx.identity.slug}", daemon=True
        )
        self._drift_thread.start()

    def _drift_check(self, background: bool = True) -> None:
        """``plan -detailed-exitcode``: 0 in sync, 2 drifted (re-apply or report), else an error."""
        try:
            with self._sequence(CHECKING, wait=not background) as got:
                if not got:
                    return
                binary, env, module_sum, backend = self._prepare()
                self._init_if_needed(binary, env, module_sum, backend)
                args = [
                    "plan",
                    "-detailed-exitcode",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=0s",
                ]
                res = self._run("plan", args, env, background=background)
                if res.exit_code == 2 and self.spec.drift_detection.action is DriftAction.REAPPLY:
                    with self._state_lock:
                        self._activity = CORRECTING
                    self.log.line("--- drift detected: re-applying")
                    self._apply()
                    self._set_drift("corrected", plan_summary(res.stdout), corrected=True)
                elif res.exit_code == 2:
                    self._set_drift(
                        "detected", plan_summary(res.stdout), reason=Reason.DRIFT_DETECTED
                    )
                elif res.exit_code == 0:
                    self._set_drift("none", "")
                else:
                    self._check(res)
        except RuntimeFailure as exc:
            if exc.reason in (Reason.INTERRUPTED, Reason.BUSY):
                return  # preempted: the next observe schedules another check
            self._set_drift("error", str(exc), reason=exc.reason)
        except Exception as exc:  # a background thread has nobody else to tell
            self._set_drift(
                "error",
                f"drift check failed: {type(exc).__name__}: {exc}",
                reason="DriftCheckFailed",
            )

    def _set_drift(self, status: str, msg: str, reason: str = "", corrected: bool = False) -> None:
        now = _now()
        with self._state_lock:
            rec = self.record
            if corrected:
                rec.drift.corrections += 1
            rec.drift.status = status
            rec.drift.message = self.redact(msg)
            rec.drift.reason = reason
            rec.drift.checked_at = now.isoformat()
            rec.drift.checked_epoch = now.timestamp()
            self.ws.save(rec)

    # ================================================================ commands
    def _run(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        log_stdout: bool = True,
        background: bool = False,
        retry_lock: bool = True,
    ) -> Result:
        """Run one command; raises for interrupted, timed out, killed and stale-lock cases."""
        binary = self._binary
        assert binary is not None
        timeout = self.spec.apply_timeout_seconds
        res = self.runner.run(
            command,
            [*binary.argv, *args],
            cwd=self.ws.module_dir,
            env=env,
            timeout=timeout,
            grace=self.spec.stop_grace_period_seconds,
            log_stdout=log_stdout,
            background=background,
        )
        if res.timed_out:
            raise RuntimeFailure(
                f"terraform {command} did not finish within {timeout:.0f}s (applyTimeoutSeconds); stopped it",
                reason=Reason.TIMEOUT,
            )
        if res.cancelled:
            raise RuntimeFailure(
                f"terraform {command} interrupted by stop", reason=Reason.INTERRUPTED
            )
        if res.killed_by is not None:
            raise RuntimeFailure(
                f"terraform {command} was killed by signal {res.killed_by}", reason=Reason.KILLED
            )
        if res.exit_code != 0 and retry_lock:
            info = lock_info(res.stderr)
            if info is not None and self._break_stale_lock(info, env):
                return self._run(command, args, env, log_stdout, background, retry_lock=False)
        return res

    def _check(self, res: Result, allowed: tuple[int, ...] = (0,)) -> None:
        """Raise the classified RuntimeFailure for an unexpected exit code."""
        if res.exit_code in allowed:
            return
        reason = classify(res.command, res.stderr, syntax_error=self._syntax_error)
        msg = message(res.command, res.exit_code, res.stderr, self.redact)
        if reason == Reason.STATE_LOCKED:
            info = lock_info(res.stderr)
            holder = Holder.load(self.ws.holder_path)
            with self._state_lock:
                self.record.stuck_lock = {
                    "lock": info.as_dict() if info else {},
                    "holder": self.record.dead_holder or (holder.describe() if holder else None),
                }
                self.ws.save(self.record)
        raise RuntimeFailure(msg, reason=reason)

    def _syntax_error(self) -> bool:
        """``fmt -check`` parses without evaluating: exit 2 means the HCL itself is broken."""
        binary = self._binary
        if binary is None:
            return False
        res = self.runner.run(
            "fmt",
            [*binary.argv, "fmt", "-check", "-list=false", "-no-color"],
            cwd=self.ws.module_dir,
            env=self._env,
            timeout=60,
            grace=1,
        )
        return res.exit_code == 2 or bool(res.exit_code not in (0, 3) and errors(res.stderr))

    def _break_stale_lock(self, info: LockInfo, env: dict[str, str]) -> bool:
        """``force-unlock`` only a lock whose holder is provably dead and provably its taker."""
        raw = (self.record.dead_holder or {}).get("raw")
        holder = Holder(**raw) if raw else None
        if holder is None or holder.alive() or not holder.owns(info):
            why = (
                "no record of who took it"
                if holder is None
                else "its holder is alive (or on another host)"
                if holder.alive()
                else "it was taken by someone else than the dead run"
            )
            self.log.line(f"--- state lock {info.id} is held; not breaking it: {why}")
            return False
        self.log.line(
            f"--- state lock {info.id} belongs to terraform {holder.command} "
            f"(pid {holder.pid}, dead): force-unlock"
        )
        res = self._run(
            "force-unlock", ["force-unlock", "-force", "-no-color", info.id], env, retry_lock=False
        )
        if res.exit_code != 0:
            self.log.line("--- force-unlock failed")
            return False
        with self._state_lock:
            self.record.dead_holder = None
            self.record.stuck_lock = None
            self.ws.save(self.record)
        return True

    # ================================================================ helpers
    def _spec_hash(self) -> str:
        return self.ctx.spec_hash or spec_hash(self.spec)

    def _foreign_holder(self) -> Holder | None:
        """A live run started by another process (e.g. before an operator restart)."""
        holder = Holder.load(self.ws.holder_path)
        if holder is None or holder.steward_pid == os.getpid() or not holder.alive():
            return None
        return holder
