"""Local daemon processes (ZenML's LocalDaemonService), detached and identity-checked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psutil

from steward.api.daemon import DaemonSpec
from steward.api.state import ServiceState
from steward.pyentry import load_callable
from steward.runtimes.base import (
    Adoption,
    Capabilities,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
)
from steward.runtimes.expand import expand_all, expand_json
from steward.runtimes.logfile import follow_lines, open_for_append, rotate_if_needed, tail_lines
from steward.runtimes.process import (
    ProcessRecord,
    describe_exit,
    forget,
    live_process,
    reap,
    register_child,
    signal_number,
    terminate_tree,
)

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
EXIT_FILE = "last-exit.json"
INTENT_FILE = "daemon.starting"
LAUNCH_ID_ENV = "STEWARD_LAUNCH_ID"


UNKNOWN_EXIT = "exited (exit code unknown: the process was not started by this Steward process)"


def _ts(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


class DaemonRuntime(Runtime):
    """A process in its own session; its pid file survives the Steward process."""

    flavor = "daemon"
    capabilities: ClassVar[Capabilities] = Capabilities(allocates_port=True)
    spec: DaemonSpec

    def __init__(self, spec: DaemonSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self._blocking_exit: int | None = None

    # -- paths ------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.ctx.runtime_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.ctx.runtime_dir / LOG_FILE

    @property
    def intent_file(self) -> Path:
        return self.ctx.runtime_dir / INTENT_FILE

    @property
    def exit_file(self) -> Path:
        return self.ctx.runtime_dir / EXIT_FILE

    # -- command ----------------------------------------------------------
    def argv(self) -> list[str]:
        """The exact argv executed; `$(VAR)` expanded, never a shell string."""
        if self.spec.command is not None:
            return expand_all(self.spec.command, self.ctx.env)
        assert self.spec.python is not None
        kwargs = expand_json(self.spec.python.kwargs, self.ctx.env)
        return [
            sys.executable,
            "-m",
            "steward.pyentry",
            "--callable",
            self.spec.python.callable,
            "--kwargs-json",
            json.dumps(kwargs),
        ]

    def environment(self) -> dict[str, str]:
        """The caller's environment plus the resolved spec env (as ZenML daemons inherit it)."""
        env = dict(os.environ)
        env.update(self.ctx.env)
        if self.spec.python is not None:
            # The fresh interpreter must import steward and the user's module as we do.
            paths = [p for p in sys.path if p]
            if env.get("PYTHONPATH"):
                paths.insert(0, env["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _workdir(self) -> Path:
        wd = Path(self.spec.working_dir) if self.spec.working_dir else self.ctx.runtime_dir
        if not wd.is_dir():
            raise RuntimeFailure(f"workingDir {wd} does not exist", reason="InvalidWorkingDir")
        return wd

    def _resolve_executable(self, argv: list[str], env: dict[str, str]) -> None:
        exe = argv[0]
        if os.sep in exe:
            if not os.access(exe, os.X_OK) or os.path.isdir(exe):
                raise RuntimeFailure(
                    f"command not found or not executable: {exe}", reason="CommandNotFound"
                )
        elif shutil.which(exe, path=env.get("PATH")) is None:
            raise RuntimeFailure(f"command not found: {exe}", reason="CommandNotFound")

    # -- interface --------------------------------------------------------
    def start(self) -> None:
        record = ProcessRecord.load(self.pid_file)
        if record is not None and live_process(record) is not None:
            return  # already running: starting twice changes nothing
        self.ctx.runtime_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        env = self.environment()
        cwd = self._workdir()
        self._resolve_executable(argv, env)
        self.exit_file.unlink(missing_ok=True)
        if self.spec.blocking:
            self._run_blocking(argv, env, cwd)
            return
        # If Steward dies between spawning and writing the pid file, the next one
        # finds the process by this token in its environment instead of starting a twin.
        token = uuid.uuid4().hex
        env[LAUNCH_ID_ENV] = token
        self.intent_file.write_text(f"{token} {self.ctx.spec_hash}")
        out: int = subprocess.DEVNULL if self.spec.silent else open_for_append(self.log_file)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise RuntimeFailure(
                self.ctx.redact(f"cannot start {argv[0]}: {exc.strerror or exc}"),
                reason="StartFailed",
            ) from exc
        finally:
            if out != subprocess.DEVNULL:
                os.close(out)
        register_child(proc)
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        ProcessRecord(
            pid=proc.pid,
            create_time=create_time,
            cmdline=argv,
            spec_hash=self.ctx.spec_hash,
            started_at=time.time(),
        ).save(self.pid_file)
        self.intent_file.unlink(missing_ok=True)

    def _run_blocking(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """The seed's blocking mode: run in the caller and return when it ends."""
        started = time.time()
        if self.spec.python is not None:
            fn = load_callable(self.spec.python.callable)
            try:
                result = fn(**expand_json(self.spec.python.kwargs, self.ctx.env))
                code = result if isinstance(result, int) else 0
            except Exception:
                code = 1
        else:
            out = subprocess.DEVNULL if self.spec.silent else open_for_append(self.log_file)
            try:
                code = subprocess.run(
                    argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
                ).returncode
            finally:
                if out != subprocess.DEVNULL:
                    os.close(out)
        self._record_exit(128 - code if code < 0 else code, started)  # signal N -> 128+N

    def _record_exit(
        self,
        code: int | None,
        started: float | None,
        pid: int | None = None,
        requested: bool = False,
    ) -> None:
        self.exit_file.parent.mkdir(parents=True, exist_ok=True)
        record = {"exitCode": code, "finishedAt": time.time(), "startedAt": started}
        if requested:
            record["requested"] = True
        self.exit_file.write_text(json.dumps(record))
        self.pid_file.unlink(missing_ok=True)
        if pid is not None:
            forget(pid)

    def _last_exit(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.exit_file.read_text())
            return data
        except (OSError, ValueError):
            return None

    def observe(self) -> Observation:
        if not self.spec.silent:
            rotate_if_needed(self.log_file, self.spec.log.max_bytes, self.spec.log.backups)
        record = ProcessRecord.load(self.pid_file)
        if record is not None:
            proc = live_process(record)
            if proc is not None:
                return Observation(
                    state=ServiceState.ACTIVE,
                    details={"pid": record.pid},
                    started_at=_ts(record.started_at),
                )
            self._record_exit(reap(record.pid), record.started_at, pid=record.pid)
        last = self._last_exit()
        if last is None:
            return Observation(state=ServiceState.INACTIVE)
        code = last.get("exitCode")
        if last.get("requested"):
            # Stopped on purpose: not a crash, nothing for a restart policy to act on.
            return Observation(
                state=ServiceState.INACTIVE, message="stopped", details={"lastExitCode": code}
            )
        failed = code != 0
        return Observation(
            state=ServiceState.ERROR if failed else ServiceState.INACTIVE,
            message=describe_exit(code, UNKNOWN_EXIT),
            exit_code=code,
            started_at=_ts(last.get("startedAt")),
            finished_at=_ts(last.get("finishedAt")),
            reason="ProcessExited" if failed else "Completed",
        )

    def stop(self, force: bool = False, grace: float | None = None) -> None:
        record = ProcessRecord.load(self.pid_file)
        if record is None:
            return
        proc = live_process(record)
        if proc is not None:
            if grace is None:
                grace = 0.0 if force else self.spec.stop_grace_period_seconds
            sig = signal.SIGKILL if force else signal_number(self.spec.stop_signal)
            stragglers = _session_members(record)
            terminate_tree(proc, sig, grace)
            for p in stragglers:  # grandchildren reparented away from the tree
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    p.kill()
        self._record_exit(reap(record.pid), record.started_at, pid=record.pid, requested=True)

    def adopt(self) -> Adoption:
        record = ProcessRecord.load(self.pid_file)
        if record is None:
            record = self._recover_interrupted_launch()
        if record is None:
            return Adoption.NOTHING
        proc = live_process(record)
        try:
            same = proc is not None and proc.cmdline() == record.cmdline
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            same = False
        if not same:
            return Adoption.NOTHING
        if record.spec_hash and self.ctx.spec_hash and record.spec_hash != self.ctx.spec_hash:
            return Adoption.OUTDATED
        return Adoption.ADOPTED

    def _recover_interrupted_launch(self) -> ProcessRecord | None:
        """A launch whose pid file was never written: find the process by its token."""
        try:
            token, _, launched_hash = self.intent_file.read_text().strip().partition(" ")
        except OSError:
            return None
        for p in psutil.process_iter(["pid"]):
            try:
                if p.environ().get(LAUNCH_ID_ENV) != token:
                    continue
                if os.getsid(p.pid) != p.pid:
                    continue  # a child of the daemon, not the daemon itself
                record = ProcessRecord(
                    pid=p.pid,
                    create_time=p.create_time(),
                    cmdline=p.cmdline(),
                    spec_hash=launched_hash,
                    started_at=p.create_time(),
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
            record.save(self.pid_file)
            self.intent_file.unlink(missing_ok=True)
            return record
        self.intent_file.unlink(missing_ok=True)
        return None

    def logs(self, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        if self.spec.silent:
            return iter(())
        if not follow:
            return iter(tail_lines(self.log_file, tail))
        return follow_lines(self.log_file, tail, lambda: self.observe().running)


def _session_members(record: ProcessRecord) -> list[psutil.Process]:
    """Processes still in the daemon's session (it is the session leader) but not below it."""
    out = []
    for p in psutil.process_iter(["pid", "create_time"]):
        try:
            if p.pid != record.pid and os.getsid(p.pid) == record.pid:
                out.append(p)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out
