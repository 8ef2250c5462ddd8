"""One Terraform command for a service: run it, classify its failure, break a provably stale lock.

Timeouts, stops and kills become RuntimeFailures at once; a non-zero exit is
left to ``check``, which classifies it (terraform.diag) and records a stuck
state lock for status. A lock whose holder is provably dead (recorded by the
sequence that took over from it) is force-unlocked once and the command
retried.
"""

from __future__ import annotations

from steward.runtimes.base import RuntimeFailure
from steward.runtimes.terraform.diag import LockInfo, Reason, classify, errors, lock_info, message
from steward.runtimes.terraform.lock import Holder, taken_by_fenced
from steward.runtimes.terraform.runner import Result
from steward.runtimes.terraform.session import Session


class Commands:
    """Runs the service's commands with the binary and environment prepared in the session."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def run(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        log_stdout: bool = True,
        background: bool = False,
        retry_lock: bool = True,
    ) -> Result:
        """Run one command; raises for interrupted, timed out, killed and stale-lock cases."""
        s = self.s
        binary = s.binary
        assert binary is not None
        timeout = s.spec.apply_timeout_seconds
        res = s.runner.run(
            command,
            [*binary.argv, *args],
            cwd=s.ws.module_dir,
            env=env,
            timeout=timeout,
            grace=s.spec.stop_grace_period_seconds,
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
                return self.run(command, args, env, log_stdout, background, retry_lock=False)
        return res

    def check(self, res: Result, allowed: tuple[int, ...] = (0,)) -> None:
        """Raise the classified RuntimeFailure for an unexpected exit code."""
        if res.exit_code in allowed:
            return
        s = self.s
        reason = classify(res.command, res.stderr, syntax_error=self._syntax_error)
        msg = message(res.command, res.exit_code, res.stderr, s.redact)
        if reason == Reason.STATE_LOCKED:
            info = lock_info(res.stderr)
            holder = Holder.load(s.ws.holder_path)
            with s.state_lock:
                s.record.stuck_lock = {
                    "lock": info.as_dict() if info else {},
                    "holder": s.record.dead_holder or (holder.describe() if holder else None),
                }
                s.ws.save(s.record)
        raise RuntimeFailure(msg, reason=reason)

    def _syntax_error(self) -> bool:
        """``fmt -check`` parses without evaluating: exit 2 means the HCL itself is broken."""
        s = self.s
        binary = s.binary
        if binary is None:
            return False
        res = s.runner.run(
            "fmt",
            [*binary.argv, "fmt", "-check", "-list=false", "-no-color"],
            cwd=s.ws.module_dir,
            env=s.env,
            timeout=60,
            grace=1,
        )
        return res.exit_code == 2 or bool(res.exit_code not in (0, 3) and errors(res.stderr))

    def _break_stale_lock(self, info: LockInfo, env: dict[str, str]) -> bool:
        """``force-unlock`` only a lock whose holder is provably dead and provably its taker."""
        s = self.s
        raw = (s.record.dead_holder or {}).get("raw")
        holder = Holder(**raw) if raw else None
        fenced = taken_by_fenced(info, s.ctx.fenced)
        if fenced and (holder is None or not holder.alive()):
            s.log.line(
                f"--- state lock {info.id} was taken by {info.who or 'an unknown holder'} at "
                f"{info.created}, on a host fenced before this host's binding began: "
                "force-unlock"
            )
            holder = None
        elif holder is None or holder.alive() or not holder.owns(info):
            why = (
                "no record of who took it"
                if holder is None
                else "its holder is alive (or on another host)"
                if holder.alive()
                else "it was taken by someone else than the dead run"
            )
            s.log.line(f"--- state lock {info.id} is held; not breaking it: {why}")
            return False
        if holder is not None:
            s.log.line(
                f"--- state lock {info.id} belongs to terraform {holder.command} "
                f"(pid {holder.pid}, dead): force-unlock"
            )
        res = self.run(
            "force-unlock", ["force-unlock", "-force", "-no-color", info.id], env, retry_lock=False
        )
        if res.exit_code != 0:
            s.log.line("--- force-unlock failed")
            return False
        with s.state_lock:
            s.record.dead_holder = None
            s.record.stuck_lock = None
            s.ws.save(s.record)
        return True
