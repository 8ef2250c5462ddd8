"""``Service``: one ManagedService driven to its desired state, from Python or the operator.

The public contract::

    svc = Service.from_manifest(manifest, state_dir=path)   # adopts what runs already
    svc.start(timeout=30); svc.is_running; svc.status.endpoint.uri
    svc.reconcile()          # one control-loop step; returns seconds until the next
    svc.stop(timeout=30)

Everything a user sees (state, lastError, Ready condition, health, endpoint)
is computed here and persisted next to the runtime files, so a second
``Service`` object, ``steward status`` or a restarted operator see the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from steward.api import reasons as R
from steward.api.manifest import ManagedService
from steward.api.state import AdminState, ServiceState
from steward.api.status import ManagedServiceStatus, utcnow
from steward.engine import guarded
from steward.engine.decide import (
    Action,
    Decision,
    LastRun,
    RunEnd,
    decide,
    exited,
)
from steward.engine.endpoints import fill_endpoint
from steward.engine.environment import ValueResolver, as_resolver
from steward.engine.explain import explain
from steward.engine.ledger import RunLedger
from steward.engine.probing import STARTUP_PROBE_INTERVAL, Prober
from steward.engine.recorder import EventSink, StatusRecorder, log_event
from steward.engine.steady import is_quiet
from steward.engine.store import ServiceStore, default_state_dir
from steward.engine.supervise import run_coro
from steward.engine.supervise import supervise as supervise_loop
from steward.engine.workload import HostContext, Workload
from steward.health.ports import PortRegistry, PortUnavailable
from steward.health.probes import ProbeResult, ProbeTarget
from steward.health.tracker import record_probe
from steward.health.tracker import reset as reset_health
from steward.runtimes.base import (
    Adoption,
    CredentialSource,
    FencedHolders,
    Observation,
    Resolver,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
)
from steward.runtimes.exits import ExitWatch
from steward.runtimes.registry import make_runtime
from steward.runtimes.sandbox import Sandbox

log = logging.getLogger("steward.engine")

__all__ = ["STARTUP_PROBE_INTERVAL", "EventSink", "Service", "default_state_dir"]

PolicyCheck = Callable[[ManagedService], list[str]]
"""The admin's policy for this service: what it breaks (rule messages); empty: allowed."""

UNWATCHED_RECHECK = 1.0
"""How often a running workload without probes is observed when nothing would wake the
loop at its end (a runtime without an exit watch, Docker's events stream down)."""
WATCHED_RESYNC = 60.0
"""...and when its end wakes the loop at once (a pidfd, Docker's events stream): a
periodic look that costs nothing per second, as a controller's resync."""

MIN_RUNNING_WITHOUT_PROBE = 0.3
"""start() of a service without endpoint waits this long so an instant crash is not 'active'."""


class Service:
    """A ManagedService and the runtime that serves it."""

    def __init__(
        self,
        manifest: ManagedService,
        state_dir: Path,
        resolver: Resolver | ValueResolver | None = None,
        events: EventSink | None = None,
        store: ServiceStore | None = None,
        policy: PolicyCheck | None = None,
        sandbox: Sandbox | None = None,
        credentials: CredentialSource | None = None,
        host_ip: str | None = None,
        fenced: FencedHolders | None = None,
    ) -> None:
        self.policy = policy
        self.store = store or ServiceStore(Path(state_dir))
        self.state_dir = self.store.state_dir
        host = HostContext(sandbox, credentials, host_ip, fenced)
        self.workload = Workload(manifest, self.store, as_resolver(resolver), host)
        self.identity = self.workload.identity
        self.service_dir = self.workload.service_dir
        self.ports = PortRegistry(self.store.ports_dir)
        self._lock = threading.RLock()
        self._runtime: Runtime | None = None
        self.prober = Prober()
        status = self.store.load_status(self.identity) or (
            manifest.status.model_copy(deep=True) if manifest.status else ManagedServiceStatus()
        )
        self._engine = self.store.load_engine(self.identity)
        self.recorder = StatusRecorder(status, self._engine, events or log_event, self.save)
        self.ledger = RunLedger(self._engine, status)
        self._take(manifest)
        self._adopt()

    def _take(self, manifest: ManagedService) -> None:
        """Point the collaborators at this manifest (construction and update())."""
        self.manifest = manifest
        self.workload.take(manifest)
        self.prober.endpoint = self.workload.endpoint
        self.ledger.policy = manifest.spec.restart_policy
        self.ledger.backoff = manifest.spec.backoff
        self.recorder.generation = manifest.metadata.generation
        self.recorder.flavor = manifest.spec.flavor
        self.recorder.probed = self.workload.probed

    @property
    def status(self) -> ManagedServiceStatus:
        return self.recorder.status

    @property
    def events(self) -> EventSink:
        return self.recorder.events

    # ------------------------------------------------------------ construction
    @classmethod
    def from_manifest(
        cls,
        manifest: dict[str, Any] | str | ManagedService,
        state_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> Service:
        """Parse (ValidationError names the field) and adopt whatever already runs."""
        parsed = ManagedService.parse(manifest)
        return cls(parsed, Path(state_dir) if state_dir else default_state_dir(), **kwargs)

    @classmethod
    def from_json(cls, data: str, state_dir: str | Path | None = None, **kwargs: Any) -> Service:
        """Rebuild a service from ``to_json()`` output (the seed's from_json)."""
        obj = json.loads(data)
        manifest = ManagedService.model_validate(obj["manifest"])
        manifest.status = ManagedServiceStatus.model_validate(obj.get("status") or {})
        return cls(manifest, Path(state_dir) if state_dir else default_state_dir(), **kwargs)

    def to_json(self) -> str:
        """Manifest and status, enough to rebuild this Service elsewhere."""
        manifest = self.manifest.model_copy(update={"status": None}).to_dict()
        return json.dumps({"manifest": manifest, "status": self.status.to_dict()}, indent=2)

    def __repr__(self) -> str:
        return (
            f"Service({self.identity.key}, flavor={self.flavor}, state={self.status.state.value})"
        )

    # ------------------------------------------------------------ properties
    @property
    def flavor(self) -> str:
        return self.workload.flavor

    @property
    def flavor_spec(self) -> Any:
        return self.workload.flavor_spec

    @property
    def runtime_dir(self) -> Path:
        return self.workload.runtime_dir

    @property
    def spec_hash(self) -> str:
        """Hash of what a running workload depends on (not adminState or restart policy)."""
        return self.workload.spec_hash

    @property
    def is_running(self) -> bool:
        """Observe now; True when running and (if it has an endpoint) healthy."""
        self.refresh()
        return self.status.state is ServiceState.ACTIVE

    @property
    def is_stopped(self) -> bool:
        self.refresh()
        return self.status.state is ServiceState.INACTIVE

    @property
    def is_failed(self) -> bool:
        self.refresh()
        return self.status.state is ServiceState.ERROR

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = make_runtime(self.flavor, self.flavor_spec, self._context())
        return self._runtime

    # ------------------------------------------------------------ persistence
    def save(self) -> None:
        """Persist manifest, status and engine bookkeeping (the store knows where)."""
        manifest = self.manifest.model_copy(update={"status": None}).to_dict()
        self.store.save(self.identity, manifest, self.status, self._engine)

    # ------------------------------------------------------------ context
    def _context(self, port: int | None = None) -> RuntimeContext:
        return self.workload.context(port if port is not None else self.status.endpoint.port)

    def _adopt(self) -> None:
        """Take over what an earlier process started; never start a second copy."""
        try:
            result = self.runtime.adopt()
        except RuntimeFailure as exc:
            self._fail(exc.reason, str(exc))
            return
        except Exception as exc:  # a broken runtime must not break construction
            self._fail("AdoptFailed", f"{type(exc).__name__}: {exc}")
            return
        if result is Adoption.OUTDATED:
            if self._updates_in_place:
                self.events("Normal", "Updating", "applied from another spec; re-applying")
                self._engine.pending_update = True
            else:
                self.events("Normal", "Replacing", "running workload was started from another spec")
                self._stop_runtime(force=False)
        elif result is Adoption.ADOPTED:
            self.prober.started()
            if self.status.endpoint.port is None:  # adopted without our state (a new state dir)
                port = self._observe().details.get("hostPort") or self._observe().details.get(
                    "port"
                )
                if isinstance(port, int):
                    self.status.endpoint.port = port
                    self._fill_endpoint()

    def exit_watch(self) -> ExitWatch | None:
        """A new watch on the end of what runs now (the caller closes it); cheap, never raises.

        The per-service loop waits on it, so a crash wakes the loop at once."""
        return guarded.exit_watch(self._runtime)

    @property
    def _updates_in_place(self) -> bool:
        """The runtime converges a changed spec with another start() (Terraform: an apply)."""
        return self.runtime.capabilities.updates_in_place

    # ------------------------------------------------------------ status helpers
    def _set(self, decision: Decision, message: str = "") -> bool:
        return self.recorder.apply(decision, message)

    def _fail(self, reason: str, message: str) -> None:
        self.recorder.fail(reason, message)

    def _start_failed(self, reason: str, message: str) -> None:
        """A start that failed is an ended run: back off (or stay down) like a crash."""
        self.recorder.warn_once(reason, message)
        obs = self._observe()
        if exited(obs):
            self._account_exit(obs)  # the runtime recorded the attempt itself (a failed apply)
        else:
            self.ledger.ended(LastRun(RunEnd.START_FAILED, reason, message))
        self._set(self._decide(obs))

    @property
    def _probed(self) -> bool:
        return self.workload.probed

    def _fill_endpoint(self, obs: Observation | None = None) -> None:
        fill_endpoint(
            self.status.endpoint,
            self.workload.endpoint,
            obs.endpoint_uri if obs is not None else None,
            from_outputs=self.runtime.capabilities.endpoint_from_outputs,
            service_host=self.workload.service_host,
        )

    # ------------------------------------------------------------ actions
    def _launch(self, reason: str = R.STARTING) -> bool:
        """Choose the port, start the runtime; on failure status says why and the back-off runs."""
        denied = self.policy(self.manifest) if self.policy is not None else []
        if denied:
            # Admission should have refused it (created before the policy, or bypassed).
            self._start_failed(R.POLICY_DENIED, "; ".join(denied))
            return False
        ep = self.workload.endpoint
        port = None
        try:
            if ep is not None and self.runtime.capabilities.allocates_port:
                port = self.ports.choose(
                    self.identity.key, ep.host, ep.port, self.status.endpoint.port, ep.allocate_port
                )
            ctx = self._context(port)
        except PortUnavailable as exc:
            self._start_failed(R.PORT_UNAVAILABLE, str(exc))
            return False
        except RuntimeFailure as exc:
            self._start_failed(exc.reason, str(exc))
            return False
        self.status.endpoint.port = port
        self._engine.env_digest = self._references_digest(ctx) if self.has_references else None
        self._fill_endpoint()
        reset_health(self.status.health)
        runtime = self.runtime
        runtime.ctx = ctx
        # The attempt's Event waits for its outcome: a start that works says "Started" (one
        # Event, as kubelet's), one that fails says "Starting"/"Restarting", then why.
        self.recorder.apply(
            Decision(Action.START, ServiceState.PENDING_STARTUP, reason), emit=False
        )
        try:
            runtime.start()
        except Exception as exc:
            self.recorder.release(send=True)
            if isinstance(exc, RuntimeFailure):
                self._start_failed(exc.reason, ctx.redact(str(exc)))
            else:
                self._start_failed(R.START_FAILED, ctx.redact(f"{type(exc).__name__}: {exc}"))
            return False
        self.prober.started()
        self.status.started_at = utcnow()
        self.ledger.started()
        self.recorder.release(send=False)
        verb = "restarted" if reason == R.RESTARTING else "started"
        self.events(
            "Normal", R.STARTED, f"{self.flavor} {verb}" + (f" on port {port}" if port else "")
        )
        self.save()
        return True

    def _stop_runtime(self, force: bool, grace: float | None = None) -> None:
        try:
            self.runtime.stop(force=force, grace=grace)
        except RuntimeFailure as exc:
            self._fail(exc.reason, str(exc))

    def _observe(self) -> Observation:
        return guarded.observe(self.runtime)

    def _probe_due(self, obs: Observation) -> bool:
        return self.prober.due(obs, self.status.health)

    def _probe_target(self, obs: Observation) -> ProbeTarget | None:
        return self.prober.target(obs, self.status.endpoint.port)

    async def probe(self, obs: Observation) -> ProbeResult | None:
        """Run the endpoint's probe once (asynchronously)."""
        return await self.prober.probe(obs, self.status.endpoint.port)

    def _account_exit(self, obs: Observation) -> None:
        """First sight of an ended run: the ledger schedules; a Warning says why it ended."""
        if not self.ledger.exit_reported(obs):
            return
        last = self._engine.last_run
        message = obs.message or "run ended"
        if last is not None and last.end is RunEnd.SUCCEEDED:
            self.events("Normal", R.EXITED, message)
        else:  # the Warning carries the run's own reason (ProcessExited, OOMKilled...)
            self.recorder.warn_once(obs.reason or R.EXITED, message)
        self.save()

    # ------------------------------------------------------------ control loop
    def refresh(self) -> None:
        """Observe and probe now, update status; take no action (the seed's update_status)."""
        with self._lock:
            obs = self._observe()
            result = run_coro(self.probe(obs)) if self._probe_target(obs) and obs.running else None
            self._update(obs, result, act=False)

    def reconcile(self) -> float:
        """One control-loop step; returns seconds until the next step is useful."""
        with self._lock:
            obs = self._observe()
            result = run_coro(self.probe(obs)) if self._probe_due(obs) else None
            return self._update(obs, result, act=True)

    async def areconcile(self, executor: Executor | None = None) -> float:
        """The same step for an event loop: probes awaited, blocking runtime calls in ``executor``.

        Separate executors per flavor keep a long Terraform apply from delaying
        daemon and container reconciles. The steady state (the workload runs and
        stays healthy: nothing to do but observe, probe and record the probe)
        stays on the loop: no thread hop when the runtime's observe is cheap, one
        (the observe) when it is not, and no status rewritten field by field.
        """
        loop = asyncio.get_running_loop()
        rt = self._runtime
        if rt is not None and rt.capabilities.cheap_observe:
            obs = self._observe()
        else:
            cached = guarded.observe_cached(rt)
            if cached is not None:
                obs = cached
            else:
                obs = await loop.run_in_executor(executor, self._observe)
        result = await self.probe(obs) if self._probe_due(obs) else None
        if self._quiet(obs, result) and self._lock.acquire(blocking=False):
            try:
                if self._quiet(obs, result):  # still, now that the lock is held
                    return self._record_quiet(result)
            finally:
                self._lock.release()
        return await loop.run_in_executor(executor, self._locked_step, obs, result)

    def _quiet(self, obs: Observation, result: ProbeResult | None) -> bool:
        """``_update`` would change nothing but the probe record (engine.steady)."""
        return is_quiet(
            obs,
            result,
            self.status,
            self._engine,
            self.manifest.spec.admin_state,
            self._probed,
            self.recorder.generation,
            self.recorder.flavor,
        )

    def _record_quiet(self, result: ProbeResult | None) -> float:
        """The quiet step: fold the probe in; the rest of the status is already right."""
        check = self.prober.check
        if check is None:
            return self._unprobed_delay()
        if result is not None:
            record_probe(self.status.health, check, result, utcnow())
        return self.prober.next_in(self.status.health)

    def _locked_step(self, obs: Observation, result: ProbeResult | None) -> float:
        """``_update`` under the lock; a start that converged in place (an apply, which
        returns when the work is done) is observed again at once, so the step that
        started it already reports the outcome instead of the next one."""
        with self._lock:
            started = self.status.started_at
            delay = self._update(obs, result, act=True)
            if (
                self.status.started_at is not started
                and self._updates_in_place
                and not self._probed
            ):
                delay = self._update(self._observe(), None, act=True)
            return delay

    def _decide(self, obs: Observation, act: bool = True) -> Decision:
        """decide() on the current facts, with the message a user should read."""
        next_at = self._engine.next_restart_at
        decision = decide(
            self.manifest.spec.admin_state,
            obs,
            self.status.health.state,
            self._probed,
            self.manifest.spec.restart_policy,
            next_at is None or time.time() >= next_at,
            self.prober.startup_expired(self.status.health),
            last_run=self._engine.last_run,
            update_pending=act and self._engine.pending_update,
        )
        spec = self.manifest.spec
        return explain(
            decision,
            obs.running,
            self.status.health,
            spec.restart_policy,
            spec.backoff,
            self._engine,
        )

    def _update(self, obs: Observation, result: ProbeResult | None, act: bool) -> float:
        ep = self.workload.endpoint
        check = ep.effective_health_check() if ep else None
        if obs.endpoint_uri or obs.details:
            self._fill_endpoint(obs)
            self.status.runtime = obs.details
        if result is not None and check is not None:
            record_probe(self.status.health, check, result, utcnow())
        if exited(obs):
            self._account_exit(obs)
        decision = self._decide(obs, act)
        if not act and decision.action is Action.START:
            # Observing only: nothing runs, so the operational state is inactive.
            decision = Decision(Action.NONE, ServiceState.INACTIVE, R.NOT_RUNNING, "not started")
        elif not act and decision.action is not Action.NONE:
            decision = Decision(
                Action.NONE, decision.state, decision.reason, decision.message, decision.stalled
            )
        if decision.action is not Action.START:
            self._set(decision)
        if decision.action is Action.START:
            if decision.reason == R.RESTARTING:
                self.status.restarts += 1
            self._engine.pending_update = False
            self._launch(decision.reason)
            return self.prober.startup_delay()
        if decision.action is Action.STOP:
            self._stop_runtime(force=False)
            reset_health(self.status.health)
            self.ports.release(self.identity.key)
            if decision.state is ServiceState.ERROR:
                # Stopped by Steward and not to be restarted (restartPolicy Never).
                self.ledger.ended(LastRun(RunEnd.KILLED, R.UNHEALTHY, decision.message))
                self.save()
            else:
                self._engine.reset_loop()  # adminState inactive: the next start is a fresh one
                self._set(Decision(Action.NONE, ServiceState.INACTIVE, R.STOPPED))
            return 0.0
        if decision.action is Action.RESTART:
            self._stop_runtime(force=False)
            run_seconds = time.monotonic() - self.prober.run_started
            self.ledger.ended(LastRun(RunEnd.KILLED, R.UNHEALTHY, decision.message), run_seconds)
            self.status.last_error = decision.message
            self.save()
            return 0.0
        next_at = self._engine.next_restart_at
        if decision.action is Action.WAIT and next_at:
            return max(0.05, next_at - time.time())
        if check is not None and obs.running:
            return self.prober.next_in(self.status.health)
        settled = obs.running and decision.state is ServiceState.ACTIVE
        return self._unprobed_delay() if settled else UNWATCHED_RECHECK

    def _unprobed_delay(self) -> float:
        """When to look again at a running workload without probes: rarely when its end
        wakes us, else every second."""
        return WATCHED_RESYNC if guarded.watches_exit(self._runtime) else UNWATCHED_RECHECK

    # ------------------------------------------------------------ public verbs
    def start(self, timeout: float = 30) -> bool:
        """Start (or adopt) and wait up to ``timeout`` s for active; False with last_error if not."""
        with self._lock:
            self.manifest.spec.admin_state = AdminState.ACTIVE
            self._engine.reset_loop()
            obs = self._observe()
            if not obs.running and not self._launch():
                return False
            probes = asyncio.new_event_loop()  # one for this start's probes
            try:
                return self._wait_started(timeout, probes)
            finally:
                probes.close()

    def _wait_started(self, timeout: float, probes: asyncio.AbstractEventLoop) -> bool:
        """start()'s wait for active (under the lock)."""
        deadline = time.monotonic() + timeout
        while True:
            obs = self._observe()
            if not obs.running and obs.state is not ServiceState.PENDING_STARTUP:
                if exited(obs):
                    self._account_exit(obs)
                    if obs.exit_code == 0:
                        self._update(obs, None, act=False)
                    else:
                        msg = f"failed during start: {obs.message}"
                        self._fail(obs.reason or R.START_FAILED, msg)
                return False
            result = run_coro(self.probe(obs), probes) if self._probe_due(obs) else None
            self._update(obs, result, act=False)
            if self.status.state is ServiceState.ACTIVE and (
                self._probed
                or time.monotonic() - self.prober.run_started >= MIN_RUNNING_WITHOUT_PROBE
            ):
                return True
            if self.status.state is ServiceState.ERROR:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timeout > 0:
                    self.status.last_error = f"not ready after {timeout}s: {self.status.health.message or 'still starting'}"
                    self.save()
                return False
            time.sleep(min(self.prober.startup_delay(), remaining))

    def stop(self, timeout: float = 30, force: bool = False) -> bool:
        """Stop and wait up to ``timeout`` s; True once nothing runs."""
        if self._runtime is not None:
            self._runtime.interrupt()  # a long start() holding the lock gives way now
        with self._lock:
            self.manifest.spec.admin_state = AdminState.INACTIVE
            self._set(Decision(Action.STOP, ServiceState.PENDING_SHUTDOWN, "Stopping"))
            grace = 0.0 if force else min(timeout, self._grace()) if timeout > 0 else None
            self._stop_runtime(force=force, grace=grace)
            obs = self._observe()
            self._engine.accounted_exit = None
            self._engine.reset_loop()
            if obs.running:
                self._fail(R.STOP_FAILED, "still running after stop")
                return False
            self.ports.release(self.identity.key)
            reset_health(self.status.health)
            self._set(Decision(Action.NONE, ServiceState.INACTIVE, "Stopped"))
            return True

    def _grace(self) -> float:
        return self.workload.stop_grace

    def update(self, manifest: dict[str, Any] | str | ManagedService) -> bool:
        """Take a new manifest; a changed spec replaces the running workload. True if replaced."""
        new = ManagedService.parse(manifest)
        with self._lock:
            old_hash = self.spec_hash
            self._take(new.model_copy(update={"status": None}))
            if self.spec_hash == old_hash:
                self.save()
                return False
            in_place = self._updates_in_place
            if self._runtime is not None:
                if not in_place:
                    self._stop_runtime(force=False)
                self._runtime.close()
            self._runtime = None
            self._engine.reset_loop()
            self._engine.accounted_exit = None
            self._engine.pending_update = in_place
            self.save()
            self.events("Normal", "SpecChanged", "spec changed; the workload will be replaced")
            return True

    @property
    def has_references(self) -> bool:
        """The spec takes values from Secrets or ConfigMaps (env valueFrom, Terraform varsFrom)."""
        return self.workload.has_references

    def _references_digest(self, ctx: RuntimeContext) -> str:
        return self.workload.references_digest(self.runtime, ctx)

    def references_changed(self) -> bool:
        """True when Secrets/ConfigMaps now resolve differently from what the workload got."""
        if not self.has_references or self._engine.env_digest is None:
            return False
        try:
            digest = self._references_digest(self._context())
        except RuntimeFailure:
            return False  # a missing reference shows up at the next start
        return digest != self._engine.env_digest

    def replace(self, reason: str) -> None:
        """Make the next reconcile start the workload afresh: stopped first, or re-applied in place."""
        with self._lock:
            self.events("Normal", "Replacing", reason)
            in_place = self._updates_in_place
            if not in_place:
                self._stop_runtime(force=False)
            self._engine.reset_loop()
            self._engine.accounted_exit = None
            self._engine.pending_update = in_place
            self.save()

    def get_logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        """Log lines of the workload (secret values redacted); ``previous``: of the run before
        the current one. Raises NoPreviousRun at once (not while iterating) when none was kept."""
        runtime = self.runtime
        lines = runtime.logs(tail=tail, follow=follow, previous=previous)

        def redacted() -> Iterator[str]:
            try:
                for line in lines:
                    yield runtime.ctx.redact(line)
            finally:  # a reader that stops early ends the follow (and its Docker client)
                close = getattr(lines, "close", None)
                if close is not None:
                    close()

        return redacted()

    def supervise(self, stop: threading.Event | None = None) -> None:
        """Run the control loop in this thread until ``stop`` is set; the workload's end
        wakes it at once (its exit watch), as it wakes the operator's loop."""
        supervise_loop(self.reconcile, self.exit_watch, stop or threading.Event())
