"""The no-cluster mode: the same engine, fed from manifest files instead of the API server.

One asyncio loop reconciles every service (probes are awaited, blocking
runtime calls run in worker threads), re-reads the files when they change,
and on Ctrl-C stops the services or leaves them running for the next run to
adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from steward.api.manifest import ManagedService
from steward.api.spec import DeletionPolicy
from steward.api.state import AdminState
from steward.engine.driver import LoopSettings, ServiceLoop
from steward.engine.service import Service
from steward.local.manifests import FileResolver, LoadResult, changed, load
from steward.local.table import Row, Table, endpoint_width, row_from

RELOAD_INTERVAL = 1.0
PROGRESS_EVERY = 5.0


STOP_WORKERS = 32
"""Services stopped at once on exit; each mostly waits for its process to end."""


def row_of(svc: Service) -> Row:
    """The row of a Service as it is now."""
    spec = svc.manifest.spec
    manifest = {
        "metadata": {"namespace": svc.identity.namespace, "name": svc.identity.name},
        "spec": {svc.flavor: {}, **({"endpoint": {}} if spec.endpoint else {})},
    }
    return row_from(manifest, svc.status.to_dict())


def _widths(loaded: LoadResult) -> Table:
    names = list(loaded.services)
    widths = [endpoint_width(ms.to_dict().get("spec") or {}) for ms, _ in loaded.services.values()]
    return Table(names, widths)


class LocalRunner:
    """Reconciles the ManagedServices declared in ``paths`` until stopped."""

    def __init__(
        self,
        paths: list[Path],
        state_dir: Path,
        leave_running: bool = False,
        out: TextIO = sys.stdout,
        until_ready: bool = False,
        timeout: float | None = None,
        output: str = "table",
    ) -> None:
        self.paths = paths
        self.output = output
        """table (for people), json (a JSON object per line), quiet (only failures, on stderr)."""
        self.table = Table([], [])
        self.state_dir = state_dir
        self.leave_running = leave_running
        self.out = out
        self.until_ready = until_ready
        self.timeout = timeout
        self.services: dict[str, Service] = {}
        self.sources: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loops: dict[str, ServiceLoop] = {}
        self._desired: dict[str, tuple[ManagedService, LoadResult]] = {}
        self._rows: dict[str, Row] = {}
        self._watched: dict[str, int] = {}
        self._stop = asyncio.Event()
        self.exit_code = 0

    def say(self, line: str) -> None:
        """A line for people: the table mode shows it, -o json wraps it, --quiet drops it."""
        if self.output == "table":
            print(line, file=self.out, flush=True)
        elif self.output == "json":
            print(json.dumps({"message": line}), file=self.out, flush=True)

    def problem(self, line: str) -> None:
        """A failure: shown in every mode (on stderr with --quiet)."""
        if self.output == "quiet":
            print(line, file=sys.stderr, flush=True)
        elif self.output == "json":
            print(json.dumps({"error": line}), file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    # ---------------------------------------------------------------- files
    def _make_service(self, ms: ManagedService, loaded: LoadResult) -> Service:
        resolver = FileResolver(loaded.objects, ms.metadata.namespace)
        key = ms.key

        def event(type_: str, reason: str, message: str, key: str = key) -> None:
            # The engine sends one Warning per distinct failure, not one per attempt.
            if type_ != "Warning":
                return
            if self.output == "json":
                event = {"name": key, "type": type_, "reason": reason, "message": message}
                print(json.dumps({"event": event}), file=self.out, flush=True)
            elif self.output == "table":
                self.problem(f"{key}: {reason}: {message}")
            # --quiet reports failing rows instead (_show): also what an earlier run saw

        return Service(ms, self.state_dir, resolver=resolver, events=event)

    def apply(self, loaded: LoadResult) -> None:
        """Bring the set of services in line with the files: add, update, remove."""
        for err in loaded.errors:
            self.problem(f"error: {err}")
        self._watched = loaded.watched
        for key, (ms, source) in loaded.services.items():
            self.sources[key] = source
            svc = self.services.get(key)
            if svc is None:
                try:
                    svc = self._make_service(ms, loaded)
                except Exception as exc:  # one broken service must not stop the others
                    self.problem(f"error: {source}: {key}: {exc}")
                    continue
                self.services[key] = svc
                self._show(svc)  # a row from the first moment, before anything starts
                self._spawn(key)
            else:
                # Taken by the service's loop (refresh), in a worker thread.
                self._desired[key] = (ms, loaded)
                self._loops[key].wake()
        bad_files = {e.split(":", 1)[0].split("[", 1)[0] for e in loaded.errors}
        for key in list(self.services):
            if key in loaded.services:
                continue
            if self.sources.get(key, "").split("[", 1)[0] in bad_files:
                continue  # its file is broken right now: keep what runs
            self._remove(key)

    def _spawn(self, key: str) -> None:
        loop = ServiceLoop(
            self._publish,
            service=self.services[key],
            refresh=self._refresh,
            settings=LoopSettings(progress_interval=PROGRESS_EVERY),
            on_error=lambda svc, exc: self.problem(
                f"{svc.identity.key}: reconcile failed: {type(exc).__name__}: {exc}"
            ),
        )
        self._loops[key] = loop
        self._tasks[key] = asyncio.create_task(loop.run(lambda: True), name=key)

    async def _refresh(self, loop: ServiceLoop) -> float | None:
        """Take what the files now say for this service (spec, Secrets, ConfigMaps)."""
        svc = loop.service
        assert svc is not None
        desired = self._desired.pop(svc.identity.key, None)
        if desired is None:
            return None
        ms, loaded = desired
        svc.workload.resolver = FileResolver(loaded.objects, ms.metadata.namespace)
        loop.check_references_now()  # a Secret in the files may have changed
        if await asyncio.to_thread(svc.update, ms):
            self.say(f"{svc.identity.key}: spec changed in {self.sources.get(svc.identity.key)}")
        else:
            svc.manifest.spec.admin_state = ms.spec.admin_state
        return None

    async def _publish(self, svc: Service, running_for: float | None) -> None:
        self._show(svc)
        if running_for is None:
            return
        activity = {"pending_startup": "starting", "pending_shutdown": "stopping"}.get(
            svc.status.state.value, svc.status.state.value
        )
        if svc.runtime.capabilities.updates_in_place and activity == "starting":
            activity = "terraform apply running"
        self.say(f"{svc.identity.key}: {activity}... {running_for:.0f}s")

    def _remove(self, key: str) -> None:
        svc = self.services.pop(key)
        task = self._tasks.pop(key)
        task.cancel()
        self._loops.pop(key, None)
        self._desired.pop(key, None)
        if svc.manifest.spec.deletion_policy is DeletionPolicy.DELETE:
            self.say(f"{key}: removed from the files; stopping")
            svc.stop(timeout=30)
        else:
            self.say(f"{key}: removed from the files; left running (deletionPolicy Orphan)")
        self._rows.pop(key, None)

    # ---------------------------------------------------------------- loop
    def _show(self, svc: Service) -> None:
        row = row_of(svc)
        if self._rows.get(row.name) == row:
            return
        self._rows[row.name] = row
        if self.output == "json":
            print(row.to_json(), file=self.out, flush=True)
        elif self.output == "table":
            print(self.table.render(row), file=self.out, flush=True)
        elif row.state == "error":
            self.problem(f"{row.name}: {row.reason}: {row.message}")

    def all_ready(self) -> bool:
        return bool(self.services) and all(
            (svc.status.condition("Ready") or _NOT_READY).status == "True"
            or svc.manifest.spec.admin_state is AdminState.INACTIVE
            for svc in self.services.values()
        )

    async def _watch_files(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(RELOAD_INTERVAL)
            if changed(self._watched):
                self.apply(await asyncio.to_thread(load, self.paths))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        loaded = load(self.paths)
        if not loaded.services and not loaded.errors:
            self.problem(f"no ManagedService manifests found in {', '.join(map(str, self.paths))}")
            return 2
        self.table = _widths(loaded)
        self.say(self.table.header())
        self.apply(loaded)
        if loaded.errors:
            self.exit_code = 2
        watcher = asyncio.create_task(self._watch_files())
        deadline = loop.time() + self.timeout if self.timeout else None
        while not self._stop.is_set():
            if self.until_ready and self.all_ready():
                break
            if deadline is not None and loop.time() > deadline:
                self.problem(f"timed out after {self.timeout}s")
                self.exit_code = self.exit_code or 1
                break
            # Only --until-ready and --timeout need a look now and then; else just wait.
            poll = 0.1 if self.until_ready or deadline is not None else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=poll)
        watcher.cancel()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), watcher, return_exceptions=True)
        for svc in self.services.values():
            self._show(svc)
        await asyncio.to_thread(self.shutdown)
        return self.exit_code

    def shutdown(self) -> None:
        """Stop everything, or leave it running for the next run to adopt."""
        if self.leave_running:
            self.say(f"leaving {len(self.services)} service(s) running; state in {self.state_dir}")
            return
        running = [(k, s) for k, s in self.services.items() if s.runtime.observe().running]
        for key, _ in running:
            self.say(f"{key}: stopping")
        # Side by side, as kubelet stops a pod's containers: the wait is the slowest grace
        # period, not the sum of them (1,000 daemons took two minutes one by one).
        with ThreadPoolExecutor(max(1, min(STOP_WORKERS, len(running)))) as pool:
            list(pool.map(lambda item: item[1].stop(timeout=30), running))


class _NotReady:
    status = "False"


_NOT_READY = _NotReady()


def run_local(
    paths: list[Path],
    state_dir: Path,
    leave_running: bool = False,
    until_ready: bool = False,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
    output: str = "table",
) -> int:
    """Entry point of ``steward local``; returns the process exit code."""
    runner = LocalRunner(paths, state_dir, leave_running, out, until_ready, timeout, output)
    return asyncio.run(runner.run())


__all__: list[str] = ["LocalRunner", "Row", "row_of", "run_local"]
