"""Local daemon processes (ZenML's LocalDaemonService), detached and identity-checked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psutil

from steward.api import reasons as R
from steward.api.daemon import DaemonSpec
from steward.api.state import ServiceState
from steward.pyentry import load_callable
from steward.runtimes.base import (
    Adoption,
    Capabilities,
    NoPreviousRun,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
    RuntimeFile,
)
from steward.runtimes.daemon.tracked import Tracked, track
from steward.runtimes.exits import ExitWatch, fd_readable, pidfd_open
from steward.runtimes.expand import expand_all, expand_json
from steward.runtimes.logfile import (
    HubStream,
    begin_run,
    follow_lines,
    hub_attach,
    hub_close,
    open_for_append,
    previous_log,
    rotate_if_needed,
    start_relay,
    tail_lines,
)
from steward.runtimes.process import (
    ProcessRecord,
    argv_hash,
    child,
    describe_exit,
    forget,
    live_process,
    reap,
    register_child,
    session_members,
    signal_number,
    terminate_tree,
)
from steward.runtimes.sandbox import Limits, Sandbox
from steward.runtimes.sandbox.cgroups import Cgroup, CgroupUnavailable
from steward.runtimes.sandbox.env import clean_environment
from steward.runtimes.sandbox.fs import prepare, write_private
from steward.runtimes.sandbox.spawn import held_popen

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
EXIT_FILE = "last-exit.json"
INTENT_FILE = "daemon.starting"
LAUNCH_ID_ENV = "STEWARD_LAUNCH_ID"


UNKNOWN_EXIT = "exited (exit code unknown: the process was not started by this Steward process)"
RELAY_WAIT_SECONDS = 2.0
"""After the daemon's cgroup or tree is gone, how long its log writer may take to drain."""


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
        self._tracked: Tracked | None = None
        self._track_lock = threading.Lock()
        """Guards ``_tracked``: its pidfd is duplicated on the event loop's thread."""

    # -- paths ------------------------------------------------------------
    pid_file = RuntimeFile(PID_FILE)
    log_file = RuntimeFile(LOG_FILE)
    intent_file = RuntimeFile(INTENT_FILE)
    exit_file = RuntimeFile(EXIT_FILE)

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

    def environment(self, home: Path | None = None) -> dict[str, str]:
        """The caller's environment plus the resolved spec env (as ZenML daemons inherit it);
        in a sandbox with clean_env only the spec's env plus PATH, HOME and LANG."""
        sandbox = self.ctx.sandbox
        if sandbox is not None and sandbox.clean_env:
            env = clean_environment(self.ctx.env, home or self.ctx.runtime_dir)
        else:
            env = dict(os.environ)
            env.update(self.ctx.env)
        if self.spec.python is not None:
            # The fresh interpreter must import steward and the user's module as we do.
            paths = [p for p in sys.path if p]
            if env.get("PYTHONPATH"):
                paths.insert(0, env["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _workdir(self, home: Path | None = None) -> Path:
        default = home if home is not None else self.ctx.runtime_dir
        wd = Path(self.spec.working_dir) if self.spec.working_dir else default
        if not wd.is_dir():
            raise RuntimeFailure(f"workingDir {wd} does not exist", reason=R.INVALID_WORKING_DIR)
        return wd

    def _resolve_executable(self, argv: list[str], env: dict[str, str]) -> None:
        exe = argv[0]
        if os.sep in exe:
            if not os.access(exe, os.X_OK) or os.path.isdir(exe):
                raise RuntimeFailure(
                    f"command not found or not executable: {exe}", reason=R.COMMAND_NOT_FOUND
                )
        elif shutil.which(exe, path=env.get("PATH")) is None:
            raise RuntimeFailure(f"command not found: {exe}", reason=R.COMMAND_NOT_FOUND)

    # -- interface --------------------------------------------------------
    def start(self) -> None:
        if self._still_running() is not None:
            return  # already running: starting twice changes nothing
        record = ProcessRecord.load(self.pid_file)
        if record is not None and live_process(record) is not None:
            return  # already running: starting twice changes nothing
        self.ctx.runtime_dir.mkdir(parents=True, exist_ok=True)
        sandbox = self.ctx.sandbox
        if sandbox is not None and self.spec.blocking:
            raise RuntimeFailure(
                "blocking mode runs in the caller's process and cannot be sandboxed",
                reason=R.SANDBOX_UNAVAILABLE,
            )
        home = prepare(self.ctx.runtime_dir, sandbox) if sandbox is not None else None
        argv = self.argv()
        env = self.environment(home)
        cwd = self._workdir(home)
        self._resolve_executable(argv, env)
        self.exit_file.unlink(missing_ok=True)
        if not self.spec.silent:
            begin_run(self.log_file)
        if self.spec.blocking:
            self._run_blocking(argv, env, cwd)
            return
        cgroup, cgroup_info = self._cgroup(sandbox) if sandbox is not None else (None, {})
        # If Steward dies between spawning and writing the pid file, the next one
        # finds the process by this token in its environment instead of starting a twin.
        token = uuid.uuid4().hex
        env[LAUNCH_ID_ENV] = token
        write_private(self.intent_file, f"{token} {self.ctx.spec_hash}")
        relay: subprocess.Popen[bytes] | None = None
        hub: HubStream | None = None
        out: int = subprocess.DEVNULL
        logs: int | None = None
        if not self.spec.silent:  # the read end goes to the log writer once the daemon runs
            logs, out = os.pipe()
        popen_kwargs: dict[str, Any] = {
            "stdout": out,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
            "close_fds": True,
        }
        try:
            if sandbox is not None:
                proc = held_popen(
                    argv,
                    cgroup.add if cgroup is not None else _no_cgroup,
                    cwd=cwd,
                    env=env,
                    uid=sandbox.uid,
                    gid=sandbox.gid,
                    **popen_kwargs,
                )
            else:
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, **popen_kwargs
                )
        except OSError as exc:
            if logs is not None:
                os.close(logs)
            self._abandon(cgroup)
            raise RuntimeFailure(
                self.ctx.redact(f"cannot start {argv[0]}: {exc.strerror or exc}"),
                reason=R.START_FAILED,
            ) from exc
        finally:
            if out != subprocess.DEVNULL:
                os.close(out)
        register_child(proc)
        if logs is not None:
            try:
                hub, relay = self._log_writer(logs, sandbox is not None)
            except OSError as exc:
                # Without a reader its output would fail: this daemon cannot run as asked.
                _kill_session(proc.pid)
                self._abandon(cgroup)
                raise RuntimeFailure(
                    f"cannot start the log writer of {argv[0]}: {exc.strerror or exc}",
                    reason=R.START_FAILED,
                ) from exc
            finally:
                os.close(logs)
        writer = relay.pid if relay is not None else hub.pid if hub is not None else 0
        record = ProcessRecord(
            pid=proc.pid,
            create_time=_create_time(proc.pid),
            cmdline_hash=argv_hash(argv),
            spec_hash=self.ctx.spec_hash,
            started_at=time.time(),
            uid=sandbox.uid if sandbox is not None else None,
            cgroup=cgroup_info,
            relay_pid=writer,
            relay_create_time=_create_time(writer) if writer else 0.0,
            relay_stream=hub.sid if hub is not None else "",
        )
        record.save(self.pid_file)
        self.intent_file.unlink(missing_ok=True)
        self._track(record, proc)

    def _log_writer(
        self, r: int, private: bool
    ) -> tuple[HubStream | None, subprocess.Popen[bytes] | None]:
        """The state directory's hub takes the pipe's read end, or a relay of its own does;
        sandbox or not, the writer rotates as the log grows."""
        mode = 0o600 if private else 0o640
        log = self.spec.log
        if self.ctx.log_hub_dir is not None:
            hub = hub_attach(
                self.ctx.log_hub_dir, self.log_file, r, log.max_bytes, log.backups, mode
            )
            if hub is not None:
                return hub, None
        return None, start_relay(self.log_file, r, log.max_bytes, log.backups, mode)

    # -- what runs now, without the pid file ---------------------------------
    def _track(self, record: ProcessRecord, proc: subprocess.Popen[bytes] | None) -> None:
        cgroup = self._record_cgroup(record)
        details = {"pid": record.pid, **self._sandbox_details(record, cgroup)}
        tracked = track(record, cgroup, details, proc)
        with self._track_lock:
            old, self._tracked = self._tracked, tracked
        if old is not None:
            old.close()

    def _untrack(self) -> None:
        with self._track_lock:
            old, self._tracked = self._tracked, None
        if old is not None:
            old.close()

    def _still_running(self) -> Tracked | None:
        """The tracked process if it still runs (one syscall); else forget it, None."""
        with self._track_lock:
            tracked = self._tracked
            if tracked is None or tracked.alive():
                return tracked
        self._untrack()
        return None

    def _running(self, tracked: Tracked) -> Observation:
        details = dict(tracked.details)
        kills = tracked.cgroup.oom_kills() if tracked.cgroup is not None else 0
        if kills:
            details["oomKills"] = kills
        return Observation(
            state=ServiceState.ACTIVE,
            details=details,
            started_at=_ts(tracked.record.started_at),
        )

    def exit_watch(self) -> ExitWatch | None:
        """A pidfd of the tracked daemon (ours or adopted): readable once it exits."""
        with self._track_lock:
            tracked = self._tracked
            return tracked.watch() if tracked is not None else None

    def watches_exit(self) -> bool:
        """Our child (``Popen``) or a pidfd of an adopted daemon: its end is seen at once."""
        with self._track_lock:
            tracked = self._tracked
            return tracked is not None and tracked.watchable

    def close(self) -> None:
        self._untrack()

    # -- sandbox ----------------------------------------------------------
    def limits(self, sandbox: Sandbox) -> Limits:
        """The spec's resources, capped by the sandbox's ceilings (which are the defaults)."""
        r = self.spec.resources
        wanted = (
            Limits(memory_bytes=r.memory_bytes, cpu_millicores=r.cpu_millicores, pids=r.pids)
            if r is not None
            else Limits()
        )
        return wanted.capped(sandbox.limits)

    def cgroup_name(self, sandbox: Sandbox) -> str:
        return f"{self.ctx.identity.slug}-{sandbox.uid}"

    def _cgroup(self, sandbox: Sandbox) -> tuple[Cgroup | None, dict[str, Any]]:
        """The service's cgroup, created with its limits; or why there is none."""
        limits = self.limits(sandbox)
        try:
            cgroup = Cgroup.plan(sandbox.cgroup_parent, self.cgroup_name(sandbox))
            if cgroup.exists and cgroup.pids() and not cgroup.kill():
                raise CgroupUnavailable(f"{cgroup.describe()} holds processes surviving SIGKILL")
            cgroup.remove()  # a fresh one: counters (oom_kill, failcnt) from zero
            cgroup.create(limits)
        except CgroupUnavailable as exc:
            if sandbox.require_limits:
                raise RuntimeFailure(
                    f"resource limits cannot be enforced: {exc}", reason=R.LIMITS_UNAVAILABLE
                ) from None
            return None, {"enforced": False, "why": str(exc), "limits": limits.describe()}
        return cgroup, {
            "enforced": True,
            "version": cgroup.version,
            "dirs": cgroup.record(),
            "limits": limits.describe(),
        }

    @staticmethod
    def _record_cgroup(record: ProcessRecord) -> Cgroup | None:
        info = record.cgroup
        if not info.get("enforced") or not info.get("dirs"):
            return None
        return Cgroup.restore(int(info.get("version", 1)), dict(info["dirs"]))

    def _sandbox_details(self, record: ProcessRecord, cgroup: Cgroup | None) -> dict[str, Any]:
        if record.uid is None and not record.cgroup:
            return {}
        info = record.cgroup
        out: dict[str, Any] = {"uid": record.uid, "limitsEnforced": bool(info.get("enforced"))}
        if info.get("limits"):
            out["limits"] = info["limits"]
        if info.get("why"):
            out["limitsUnavailable"] = info["why"]
        if cgroup is not None:
            out["cgroup"] = cgroup.describe()
        return out

    @staticmethod
    def _abandon(cgroup: Cgroup | None) -> None:
        """Undo a launch that did not happen: its cgroup goes (no log writer was started
        yet: the pipe is handed over only once the daemon runs)."""
        if cgroup is not None:
            cgroup.kill()
            cgroup.remove()

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
        oom: dict[str, Any] | None = None,
    ) -> None:
        self.exit_file.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"exitCode": code, "finishedAt": time.time(), "startedAt": started}
        if requested:
            record["requested"] = True
        if oom:
            record["oom"] = oom
        write_private(self.exit_file, json.dumps(record))
        self.pid_file.unlink(missing_ok=True)
        if pid is not None:
            forget(pid)

    def _last_exit(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.exit_file.read_text())
            return data
        except (OSError, ValueError):
            return None

    def observe_cached(self) -> Observation | None:
        """The tracked daemon still runs: ACTIVE without reading the pid file or /proc."""
        tracked = self._still_running()
        if tracked is None:
            return None
        if not self.spec.silent and not tracked.record.relay_pid:
            rotate_if_needed(self.log_file, self.spec.log.max_bytes, self.spec.log.backups)
        return self._running(tracked)

    def observe(self) -> Observation:
        cached = self.observe_cached()
        if cached is not None:
            return cached
        record = ProcessRecord.load(self.pid_file)
        if not self.spec.silent and (record is None or not record.relay_pid):
            # Launched by an earlier Steward without a log writer: rotate when looking.
            rotate_if_needed(self.log_file, self.spec.log.max_bytes, self.spec.log.backups)
        if record is not None:
            proc = live_process(record)
            cgroup = self._record_cgroup(record)
            details = {"pid": record.pid, **self._sandbox_details(record, cgroup)}
            if proc is not None:
                self._track(record, child(record.pid))
                kills = cgroup.oom_kills() if cgroup is not None else 0
                if kills:
                    details["oomKills"] = kills
                return Observation(
                    state=ServiceState.ACTIVE,
                    details=details,
                    started_at=_ts(record.started_at),
                )
            # The main process ended: the rest of its cgroup ends with it, as in a Pod.
            oom = None
            if cgroup is not None:
                if not cgroup.kill():
                    return Observation(
                        state=ServiceState.ACTIVE,
                        message=f"main process exited; processes survive in {cgroup.describe()}",
                        details={**details, "survivors": sorted(cgroup.pids())},
                        started_at=_ts(record.started_at),
                        reason=R.STOP_FAILED,
                    )
                oom = self._oom(cgroup)
                cgroup.remove()
            self._end_relay(record)
            self._record_exit(reap(record.pid), record.started_at, pid=record.pid, oom=oom)
        last = self._last_exit()
        if last is None:
            return Observation(state=ServiceState.INACTIVE)
        code = last.get("exitCode")
        if last.get("requested"):
            # Stopped on purpose: not a crash, nothing for a restart policy to act on.
            return Observation(
                state=ServiceState.INACTIVE, message="stopped", details={"lastExitCode": code}
            )
        oom = last.get("oom")
        if oom:
            limit = oom.get("limitBytes")
            return Observation(
                state=ServiceState.ERROR,
                message="killed by the kernel: out of memory"
                + (f" (limit {limit} bytes)" if limit else "")
                + f", {describe_exit(code, UNKNOWN_EXIT)}",
                details={"oom": oom},
                exit_code=code if code is not None else 137,
                started_at=_ts(last.get("startedAt")),
                finished_at=_ts(last.get("finishedAt")),
                reason=R.OOM_KILLED,
            )
        failed = code != 0
        return Observation(
            state=ServiceState.ERROR if failed else ServiceState.INACTIVE,
            message=describe_exit(code, UNKNOWN_EXIT),
            exit_code=code,
            started_at=_ts(last.get("startedAt")),
            finished_at=_ts(last.get("finishedAt")),
            reason=R.PROCESS_EXITED if failed else R.COMPLETED,
        )

    def _oom(self, cgroup: Cgroup) -> dict[str, Any] | None:
        """What the OOM killer did in the cgroup (read before it is removed); None: nothing."""
        kills = cgroup.oom_kills()
        if not kills:
            return None
        out: dict[str, Any] = {"kills": kills, **cgroup.memory_stats()}
        sandbox = self.ctx.sandbox
        if sandbox is not None:
            limit = self.limits(sandbox).memory_bytes
            if limit is not None:
                out["limitBytes"] = limit
        return out

    def _end_relay(self, record: ProcessRecord, wait: float = RELAY_WAIT_SECONDS) -> None:
        """The log writer drains and ends at EOF; one that does not is killed. The hub
        writes what the pipe holds and lets it go."""
        if not record.relay_pid:
            return
        if record.relay_stream:
            if self.ctx.log_hub_dir is not None:
                hub_close(self.ctx.log_hub_dir, record.relay_stream)
            return
        fd = pidfd_open(record.relay_pid)
        relay = live_process(
            ProcessRecord(record.relay_pid, record.relay_create_time, cmdline_hash="")
        )
        deadline = time.monotonic() + wait
        if fd is not None:
            try:  # opened before the check: it is that relay's; woken when it ends
                if relay is not None and fd_readable(fd, wait):
                    relay = None
                deadline = time.monotonic()  # waited already: one still there is killed
            finally:
                os.close(fd)
        while relay is not None and _running(relay):
            reap(record.relay_pid)
            if time.monotonic() > deadline:
                with contextlib.suppress(psutil.NoSuchProcess):
                    relay.kill()
                    relay.wait(2)
                break
            time.sleep(0.01)
        reap(record.relay_pid)
        forget(record.relay_pid)

    def stop(self, force: bool = False, grace: float | None = None) -> None:
        self._untrack()
        record = ProcessRecord.load(self.pid_file)
        if record is None:
            return
        proc = live_process(record)
        cgroup = self._record_cgroup(record)
        if proc is not None:
            if grace is None:
                grace = 0.0 if force else self.spec.stop_grace_period_seconds
            sig = signal.SIGKILL if force else signal_number(self.spec.stop_signal)
            stragglers = _session_members(record)
            terminate_tree(proc, sig, grace)
            for p in stragglers:  # grandchildren reparented away from the tree
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    p.kill()
        oom = None
        if cgroup is not None:
            # Whatever escaped the tree and the session (setsid, double fork) is in the cgroup.
            if not cgroup.kill():
                raise RuntimeFailure(
                    f"stop: processes {sorted(cgroup.pids())} survive SIGKILL in "
                    f"{cgroup.describe()}",
                    reason=R.STOP_FAILED,
                )
            oom = self._oom(cgroup)
            if not cgroup.remove():
                raise RuntimeFailure(
                    f"stop: cgroup {cgroup.describe()} cannot be removed", reason=R.STOP_FAILED
                )
        self._end_relay(record)
        self._record_exit(
            reap(record.pid), record.started_at, pid=record.pid, requested=True, oom=oom
        )

    def adopt(self) -> Adoption:
        record = ProcessRecord.load(self.pid_file)
        if record is None:
            record = self._recover_interrupted_launch()
        if record is None:
            return Adoption.NOTHING
        proc = live_process(record)
        try:
            same = proc is not None and argv_hash(proc.cmdline()) == record.cmdline_hash
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            same = False
        if not same:
            return Adoption.NOTHING
        if record.spec_hash and self.ctx.spec_hash and record.spec_hash != self.ctx.spec_hash:
            return Adoption.OUTDATED
        self._track(record, child(record.pid))
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
                    cmdline_hash=argv_hash(p.cmdline()),
                    spec_hash=launched_hash,
                    started_at=p.create_time(),
                    uid=p.uids().real if self.ctx.sandbox is not None else None,
                    cgroup=self._found_cgroup(p.pid),
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
            record.save(self.pid_file)
            self.intent_file.unlink(missing_ok=True)
            return record
        self.intent_file.unlink(missing_ok=True)
        return None

    def _found_cgroup(self, pid: int) -> dict[str, Any]:
        """The cgroup a recovered launch runs in (its pid file never recorded it)."""
        sandbox = self.ctx.sandbox
        if sandbox is None:
            return {}
        try:
            cgroup = Cgroup.plan(sandbox.cgroup_parent, self.cgroup_name(sandbox))
        except CgroupUnavailable:
            return {}
        if pid not in cgroup.pids():
            return {}
        return {"enforced": True, "version": cgroup.version, "dirs": cgroup.record()}

    def logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        if previous:
            kept = previous_log(self.log_file)
            if self.spec.silent or not kept.exists():
                raise NoPreviousRun(f"no previous run of {self.ctx.identity.key} was kept")
            return iter(tail_lines(kept, tail))  # a finished run: nothing to follow
        if self.spec.silent:
            return iter(())
        if not follow:
            return iter(tail_lines(self.log_file, tail))
        return follow_lines(self.log_file, tail, self._alive)

    def _alive(self) -> bool:
        """Whether the daemon still runs, without observe()'s bookkeeping: a reader following
        its log (the agent's log endpoint, in another thread) must record nothing."""
        record = ProcessRecord.load(self.pid_file)
        return record is not None and live_process(record) is not None


def _kill_session(pid: int) -> None:
    """A daemon that was just spawned and must not run: it leads its own session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _no_cgroup(pid: int) -> None:
    """Limits unavailable (and not required): the child runs where it is."""


def _create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return 0.0


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_members(record: ProcessRecord) -> list[psutil.Process]:
    """Processes still in the daemon's session (it is the session leader), below it or
    re-parented away from it."""
    return session_members(record.pid)
