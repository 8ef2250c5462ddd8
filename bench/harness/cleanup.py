"""Everything a benchmark run starts is stopped again, by PID or container id.

Every process the run starts, directly or through Steward, carries the run's
marker in its environment (``STEWARD_BENCH_RUN=<pid>-<hex>``; daemons inherit
it from the operator, which passes its environment on). The final sweep kills
exactly the processes with this run's marker, one PID at a time; nothing is
matched by name. Containers carry a label (raw ``docker run``) or a Steward
service label in a namespace named after the run.

``Reaper.close`` runs from a ``finally`` block, from ``atexit`` and on
SIGTERM/SIGHUP (turned into KeyboardInterrupt so ``finally`` blocks run).
A run killed with SIGKILL cannot clean up: the next run sweeps processes
whose marker names an owner PID that is gone (``sweep_stale``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

import psutil

RUN_ENV = "STEWARD_BENCH_RUN"
SCOPE_ENV = "STEWARD_BENCH_SCOPE"
RUN_LABEL = "steward.bench.run"
SERVICE_LABEL = "steward.dev/service"
FOREIGN_MARKERS = ("STEWARD_TEST_SESSION",)
"""Markers of the test suite's leak checks: never handed on to what the bench starts."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _environ(p: psutil.Process) -> dict[str, str]:
    try:
        return p.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return {}


def kill_pids(pids: list[int], grace: float = 2.0) -> int:
    """SIGTERM each PID, SIGKILL what is left after ``grace`` s; returns how many existed."""
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p = psutil.Process(pid)
            p.terminate()
            procs.append(p)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def marked_pids(run_id: str, scope: str | None = None) -> list[int]:
    """PIDs (not this process) whose environment carries ``run_id`` (and ``scope``)."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        env = _environ(p)
        if env.get(RUN_ENV) != run_id:
            continue
        if scope is not None and env.get(SCOPE_ENV) != scope:
            continue
        out.append(p.pid)
    return out


def sweep_stale() -> int:
    """Kill leftovers of earlier bench runs whose harness process no longer exists."""
    stale = []
    for p in psutil.process_iter(["pid"]):
        marker = _environ(p).get(RUN_ENV)
        if not marker or p.pid == os.getpid():
            continue
        owner = marker.split("-", 1)[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            stale.append(p.pid)
    if stale:
        log(f"killing {len(stale)} process(es) left by an earlier bench run")
        kill_pids(stale, grace=1.0)
    return len(stale)


class Reaper:
    """Owns the cleanup of one run: callbacks (LIFO), spawned processes, containers."""

    def __init__(self) -> None:
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.short = self.run_id.split("-", 1)[1][:6]
        self._callbacks: list[tuple[str, Callable[[], Any]]] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._closed = False
        self._service_namespace_prefix = f"b{self.short}-"

    # -- environment -------------------------------------------------------
    def install(self) -> None:
        """Mark this process (children inherit it), register atexit and signal handlers."""
        os.environ[RUN_ENV] = self.run_id
        for name in FOREIGN_MARKERS:
            os.environ.pop(name, None)
        atexit.register(self.close)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
        # Started in the background by a non-interactive shell, SIGINT arrives ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def env(self, base: dict[str, str] | None = None, scope: str | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env[RUN_ENV] = self.run_id
        for name in FOREIGN_MARKERS:
            env.pop(name, None)
        if scope:
            env[SCOPE_ENV] = scope
        return env

    def namespace(self, suffix: str) -> str:
        """A namespace name that identifies this run (containers are found by it)."""
        return f"{self._service_namespace_prefix}{suffix}"

    # -- registration ------------------------------------------------------
    def on_close(self, what: str, fn: Callable[[], Any]) -> None:
        self._callbacks.append((what, fn))

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Popen in its own session (a Ctrl-C is handled here, not by the child)."""
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", self.env())
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, **kwargs)
        self._procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    # -- teardown ----------------------------------------------------------
    def stop_proc(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        """SIGTERM the process (by PID), SIGKILL after ``grace``; reaped either way."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        self.forget(proc)

    def sweep_scope(self, scope: str) -> int:
        """Kill every process of this run started under ``scope`` (an operator and its daemons)."""
        pids = marked_pids(self.run_id, scope)
        if pids:
            kill_pids(pids, grace=1.0)
        return len(pids)

    def remove_containers(self) -> int:
        """Remove (by id) the containers of this run: raw ones by label, Steward's by namespace."""
        ids: list[str] = []
        try:
            raw = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={RUN_LABEL}={self.run_id}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            ids += raw.stdout.split()
            managed = subprocess.run(
                [
                    "docker",
                    "ps",
                    "-a",
                    "--filter",
                    f"label={SERVICE_LABEL}",
                    "--format",
                    '{{.ID}} {{.Label "' + SERVICE_LABEL + '"}}',
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return 0
        for line in managed.stdout.splitlines():
            cid, _, service = line.partition(" ")
            if service.startswith(self._service_namespace_prefix):
                ids.append(cid)
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False
            )
        return len(ids)

    def close(self) -> None:
        """Run every cleanup step; each one is attempted even when another fails."""
        if self._closed:
            return
        self._closed = True
        while self._callbacks:
            what, fn = self._callbacks.pop()
            try:
                fn()
            except BaseException as exc:  # keep cleaning up
                log(f"cleanup step {what!r} failed: {type(exc).__name__}: {exc}")
        for proc in list(self._procs):
            with contextlib.suppress(Exception):
                self.stop_proc(proc, grace=2.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = marked_pids(self.run_id)
            if not pids:
                break
            log(f"killing {len(pids)} leftover process(es) of this run")
            kill_pids(pids, grace=1.0)
        with contextlib.suppress(Exception):
            n = self.remove_containers()
            if n:
                log(f"removed {n} leftover container(s) of this run")
        atexit.unregister(self.close)
