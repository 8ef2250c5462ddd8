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
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from steward.api import reasons as R
from steward.api.endpoint import EndpointProtocol
from steward.api.manifest import ManagedService
from steward.api.state import AdminState, ServiceState
from steward.api.status import HealthState, ManagedServiceStatus, utcnow
from steward.engine.backoff import crashes_after_exit, restart_delay
from steward.engine.decide import (
    Action,
    Decision,
    LastRun,
    RunEnd,
    decide,
    exited,
    restarts,
    run_end_of,
)
from steward.engine.environment import ValueResolver, no_cluster_resolver, resolve_env
from steward.engine.state import EngineState
from steward.health.ports import PortRegistry, PortUnavailable
from steward.health.probes import ProbeResult, ProbeTarget, render_uri, run_probe
from steward.health.tracker import record_probe
from steward.health.tracker import reset as reset_health
from steward.runtimes.base import (
    Adoption,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
    ServiceIdentity,
    spec_hash,
)
from steward.runtimes.registry import make_runtime

log = logging.getLogger("steward.engine")

EventSink = Callable[[str, str, str], None]
"""(type "Normal"|"Warning", reason, message)."""

STARTUP_PROBE_INTERVAL = 0.05
MIN_RUNNING_WITHOUT_PROBE = 0.3
"""start() of a service without endpoint waits this long so an instant crash is not 'active'."""


def default_state_dir() -> Path:
    """$STEWARD_STATE_DIR, else ~/.local/state/steward."""
    env = os.environ.get("STEWARD_STATE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "steward"


def _digest(env: dict[str, str]) -> str:
    """A hash of resolved values: compares them without keeping secrets around."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()


BACKOFF_MARK = "; back-off "
"""Separates a failure from the retry time in messages (Events compare the part before it)."""


def _stable(message: str) -> str:
    """The part of a message that names the failure, without when it is retried."""
    return message.split(BACKOFF_MARK, 1)[0]


def _log_event(type_: str, reason: str, message: str) -> None:
    log.log(logging.WARNING if type_ == "Warning" else logging.INFO, "%s: %s", reason, message)


def _run_coro(coro: Any) -> Any:
    """Run a coroutine from sync code, even when the caller already has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(asyncio.run(coro)))
    t.start()
    t.join()
    return box[0]


class Service:
    """A ManagedService and the runtime that serves it."""

    def __init__(
        self,
        manifest: ManagedService,
        state_dir: Path,
        resolver: ValueResolver | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.manifest = manifest
        self.identity = ServiceIdentity(manifest.metadata.namespace, manifest.metadata.name)
        self.state_dir = Path(state_dir)
        self.service_dir = (
            self.state_dir / "services" / self.identity.namespace / self.identity.name
        )
        self.resolver = resolver or no_cluster_resolver
        self.events = events or _log_event
        self.ports = PortRegistry(self.state_dir / "ports")
        self._lock = threading.RLock()
        self._runtime: Runtime | None = None
        self._last_probe = 0.0
        self._run_started = 0.0
        self.status = self._load_status()
        self._engine = self._load_engine_state()
        self._adopt()

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
        return self.manifest.spec.flavor

    @property
    def flavor_spec(self) -> Any:
        return getattr(self.manifest.spec, self.flavor)

    @property
    def runtime_dir(self) -> Path:
        spec = self.flavor_spec
        if getattr(spec, "singleton", False):
            return self.state_dir
        return self.service_dir / "runtime"

    @property
    def spec_hash(self) -> str:
        """Hash of what a running workload depends on (not adminState or restart policy)."""
        return spec_hash(
            {
                self.flavor: self.flavor_spec.model_dump(mode="json"),
                "endpoint": self.manifest.spec.endpoint.model_dump(mode="json")
                if self.manifest.spec.endpoint
                else None,
            }
        )

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
    def _load_status(self) -> ManagedServiceStatus:
        path = self.service_dir / "status.json"
        try:
            return ManagedServiceStatus.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return (
                self.manifest.status.model_copy(deep=True)
                if self.manifest.status
                else ManagedServiceStatus()
            )

    def _load_engine_state(self) -> EngineState:
        try:
            return EngineState.from_json((self.service_dir / "engine.json").read_text())
        except OSError:
            return EngineState()

    def save(self) -> None:
        """Persist manifest, status and engine bookkeeping atomically."""
        self.service_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("status.json", self.status.model_dump_json(by_alias=True, exclude_none=True)),
            ("engine.json", self._engine.to_json()),
            (
                "manifest.json",
                json.dumps(self.manifest.model_copy(update={"status": None}).to_dict()),
            ),
        ):
            tmp = self.service_dir / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.service_dir / name)

    # ------------------------------------------------------------ context
    def _context(self, port: int | None = None) -> RuntimeContext:
        endpoint = self.manifest.spec.endpoint
        port = port if port is not None else self.status.endpoint.port
        base = {"PORT": str(port)} if port else {}
        env_entries = getattr(self.flavor_spec, "env", None) or []
        env, secrets = resolve_env(env_entries, base, self.resolver)
        return RuntimeContext(
            identity=self.identity,
            runtime_dir=self.runtime_dir,
            env=env,
            port=port,
            host=endpoint.host if endpoint else "127.0.0.1",
            spec_hash=self.spec_hash,
            secret_values=frozenset(secrets),
        )

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
            self._run_started = time.monotonic()
            if self.status.endpoint.port is None:  # adopted without our state (a new state dir)
                port = self._observe().details.get("hostPort") or self._observe().details.get(
                    "port"
                )
                if isinstance(port, int):
                    self.status.endpoint.port = port
                    self._fill_endpoint()

    @property
    def _updates_in_place(self) -> bool:
        """The runtime converges a changed spec with another start() (Terraform: an apply)."""
        return bool(getattr(self.runtime, "updates_in_place", False))

    # ------------------------------------------------------------ status helpers
    def _set(self, decision: Decision, message: str = "") -> bool:
        """Apply a decision to status (state, Ready/Reconciling/Stalled); Events on transitions.

        A Warning goes out once per distinct failure (reason and message), not once per
        attempt of a crash loop; Normal events only when the reason changes.
        """
        msg = message or decision.message
        before = self.status.condition("Ready")
        prev_reason = before.reason if before else None
        changed = self.status.update_state(decision.state)
        if decision.state is ServiceState.ERROR and msg:
            self.status.last_error = _stable(msg)  # the failure; when it is retried is beside it
        elif decision.ready:
            self.status.clear_error()
        ready_status: Literal["True", "False"] = "True" if decision.ready else "False"
        cond_msg = msg or {
            R.READY: "service is running" + (" and healthy" if self._probed else ""),
            R.STARTING: "waiting for the service to start",
            R.RESTARTING: "starting again after the back-off",
            R.UPDATING: "applying the changed spec",
            R.STOPPED: "adminState is inactive",
        }.get(decision.reason, "")
        gen = self.manifest.metadata.generation
        cond_changed = self.status.set_condition(
            "Ready", ready_status, decision.reason, cond_msg, gen
        )
        reconciling: Literal["True", "False"] = "True" if decision.reconciling else "False"
        cond_changed |= self.status.set_condition(
            R.RECONCILING,
            reconciling,
            decision.reason if decision.reconciling else R.READY if decision.ready else "Idle",
            cond_msg if decision.reconciling else "",
            gen,
        )
        stalled: Literal["True", "False"] = "True" if decision.stalled else "False"
        cond_changed |= self.status.set_condition(
            R.STALLED,
            stalled,
            decision.reason if decision.stalled else "NotStalled",
            cond_msg if decision.stalled else "",
            gen,
        )
        self.status.observed_generation = gen
        self.status.flavor = self.flavor
        if decision.ready:
            self._engine.warned = []
        if changed or (cond_changed and prev_reason != decision.reason):
            self._emit(decision, cond_msg or decision.state.value)
        if changed or cond_changed:
            self.save()
        return changed or cond_changed

    def _emit(self, decision: Decision, message: str) -> None:
        if decision.state is not ServiceState.ERROR:
            self.events("Normal", decision.reason, message)
            return
        if self._engine.first_warning(_stable(message)):
            self.events("Warning", decision.reason, message)

    def _fail(self, reason: str, message: str) -> None:
        self._set(Decision(Action.NONE, ServiceState.ERROR, reason, message))

    def _start_failed(self, reason: str, message: str) -> None:
        """A start that failed is an ended run: back off (or stay down) like a crash."""
        if self._engine.first_warning(_stable(message)):
            self.events("Warning", reason, message)
        obs = self._observe()
        if exited(obs):
            self._account_exit(obs)  # the runtime recorded the attempt itself (a failed apply)
        else:
            last = LastRun(RunEnd.START_FAILED, reason, message)
            self._engine.last_run = last
            if restarts(self.manifest.spec.restart_policy, last):
                self._schedule_restart(None)
            else:
                self._engine.next_restart_at = None
                self.status.next_restart_at = None
        self._set(self._decide(obs))

    @property
    def _probed(self) -> bool:
        return self.manifest.spec.endpoint is not None

    def _fill_endpoint(self, obs: Observation | None = None) -> None:
        ep = self.manifest.spec.endpoint
        st = self.status.endpoint
        uri = obs.endpoint_uri if obs is not None else None
        if uri:
            st.uri = uri
            if ep is not None and ep.effective_health_check().http is not None:
                path = ep.effective_health_check().http.path  # type: ignore[union-attr]
                st.health_url = uri.rstrip("/") + path
            return
        if ep is None or st.port is None or self.flavor == "terraform":
            return
        st.protocol = ep.protocol
        st.host = ep.host
        st.uri = render_uri(ep.protocol, ep.host, st.port)
        check = ep.effective_health_check()
        st.health_url = (
            render_uri(ep.protocol, ep.host, st.port, check.http.path)
            if check.http is not None and ep.protocol is not EndpointProtocol.TCP
            else None
        )

    # ------------------------------------------------------------ actions
    def _launch(self, reason: str = R.STARTING) -> bool:
        """Choose the port, start the runtime; on failure status says why and the back-off runs."""
        ep = self.manifest.spec.endpoint
        port = None
        try:
            if ep is not None and self.flavor != "terraform":
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
        self._set(Decision(Action.START, ServiceState.PENDING_STARTUP, reason))
        try:
            runtime.start()
        except RuntimeFailure as exc:
            self._start_failed(exc.reason, ctx.redact(str(exc)))
            return False
        except Exception as exc:
            self._start_failed(R.START_FAILED, ctx.redact(f"{type(exc).__name__}: {exc}"))
            return False
        self._run_started = time.monotonic()
        self._last_probe = 0.0
        self.status.started_at = utcnow()
        self.status.next_restart_at = None
        self._engine.next_restart_at = None
        self._engine.last_run = None
        self.events(
            "Normal", "Started", f"{self.flavor} started" + (f" on port {port}" if port else "")
        )
        self.save()
        return True

    def _stop_runtime(self, force: bool, grace: float | None = None) -> None:
        try:
            self.runtime.stop(force=force, grace=grace)
        except RuntimeFailure as exc:
            self._fail(exc.reason, str(exc))

    def _observe(self) -> Observation:
        try:
            return self.runtime.observe()
        except RuntimeFailure as exc:
            return Observation(state=ServiceState.ERROR, message=str(exc), reason=exc.reason)
        except Exception as exc:
            return Observation(
                state=ServiceState.ERROR,
                message=f"{type(exc).__name__}: {exc}",
                reason="ObserveFailed",
            )

    def _probe_target(self, obs: Observation) -> ProbeTarget | None:
        ep = self.manifest.spec.endpoint
        if ep is None:
            return None
        if obs.endpoint_uri:
            try:
                return ProbeTarget.from_uri(obs.endpoint_uri)
            except ValueError:
                return None
        if self.status.endpoint.port is None:
            return None
        return ProbeTarget(ep.protocol, ep.host, self.status.endpoint.port)

    def _probe_due(self, obs: Observation) -> bool:
        ep = self.manifest.spec.endpoint
        if ep is None or not obs.running:
            return False
        check = ep.effective_health_check()
        since_start = time.monotonic() - self._run_started
        if since_start < check.initial_delay_seconds:
            return False
        interval = (
            check.period_seconds
            if self.status.health.state is not HealthState.UNKNOWN
            else min(check.period_seconds, STARTUP_PROBE_INTERVAL)
        )
        return time.monotonic() - self._last_probe >= interval

    async def probe(self, obs: Observation) -> ProbeResult | None:
        """Run the endpoint's probe once (asynchronously)."""
        ep = self.manifest.spec.endpoint
        target = self._probe_target(obs)
        if ep is None or target is None:
            return None
        self._last_probe = time.monotonic()
        return await run_probe(ep.effective_health_check(), target)

    def _startup_expired(self) -> bool:
        ep = self.manifest.spec.endpoint
        if ep is None or self.status.health.state is not HealthState.UNKNOWN:
            return False
        check = ep.effective_health_check()
        allowance = check.initial_delay_seconds + check.failure_threshold * check.period_seconds
        return (
            self.status.health.consecutive_failures >= check.failure_threshold
            and time.monotonic() - self._run_started > allowance
        )

    def _account_exit(self, obs: Observation) -> None:
        """First sight of an ended run: record it and schedule the back-off."""
        # Not the message: a runtime may refine it later (Docker's late OOM flag).
        key = (obs.finished_at.isoformat() if obs.finished_at else "") + f"|{obs.exit_code}"
        if self._engine.accounted_exit == key:
            return
        self._engine.accounted_exit = key
        last = run_end_of(obs)
        self.status.last_exit_code = obs.exit_code
        self.status.finished_at = (
            obs.finished_at.replace(microsecond=0) if obs.finished_at else utcnow()
        )
        run_seconds = None
        if obs.started_at and obs.finished_at:
            run_seconds = (obs.finished_at - obs.started_at).total_seconds()
        if last is not None:
            self._engine.last_run = last
            if restarts(self.manifest.spec.restart_policy, last):
                self._schedule_restart(run_seconds)
            else:
                self._engine.next_restart_at = None
                self.status.next_restart_at = None
        failed = last is None or last.end is not RunEnd.SUCCEEDED
        message = obs.message or "run ended"
        if not failed:
            self.events("Normal", R.EXITED, message)
        elif self._engine.first_warning(_stable(message)):
            self.events("Warning", R.EXITED, message)
        self.save()

    def _schedule_restart(self, run_seconds: float | None) -> None:
        """Count a crash and set when the next start may happen (kubelet back-off)."""
        spec = self.manifest.spec.backoff
        crashes = crashes_after_exit(spec, self._engine.crashes, run_seconds)
        self._engine.crashes = crashes
        at = time.time() + restart_delay(spec, crashes)
        self._engine.next_restart_at = at
        self.status.next_restart_at = datetime.fromtimestamp(at, UTC).replace(microsecond=0)

    # ------------------------------------------------------------ control loop
    def refresh(self) -> None:
        """Observe and probe now, update status; take no action (the seed's update_status)."""
        with self._lock:
            obs = self._observe()
            result = _run_coro(self.probe(obs)) if self._probe_target(obs) and obs.running else None
            self._update(obs, result, act=False)

    def reconcile(self) -> float:
        """One control-loop step; returns seconds until the next step is useful."""
        with self._lock:
            obs = self._observe()
            result = _run_coro(self.probe(obs)) if self._probe_due(obs) else None
            return self._update(obs, result, act=True)

    async def areconcile(self, executor: Executor | None = None) -> float:
        """The same step for an event loop: probes awaited, blocking runtime calls in ``executor``.

        Separate executors per flavor keep a long Terraform apply from delaying
        daemon and container reconciles.
        """
        loop = asyncio.get_running_loop()
        obs = await loop.run_in_executor(executor, self._observe)
        result = await self.probe(obs) if self._probe_due(obs) else None
        return await loop.run_in_executor(executor, self._locked_update, obs, result)

    def _locked_update(self, obs: Observation, result: ProbeResult | None) -> float:
        with self._lock:
            return self._update(obs, result, act=True)

    def _decide(self, obs: Observation) -> Decision:
        """decide() on the current facts, with the message a user should read."""
        next_at = self._engine.next_restart_at
        decision = decide(
            self.manifest.spec.admin_state,
            obs,
            self.status.health.state,
            self._probed,
            self.manifest.spec.restart_policy,
            next_at is None or time.time() >= next_at,
            self._startup_expired(),
            last_run=self._engine.last_run,
        )
        message = decision.message
        if decision.reason == R.UNHEALTHY and obs.running:
            message = f"liveness probe failed: {self.status.health.message}"
        elif decision.reason == R.UNHEALTHY and not message:
            message = f"stopped after failed probes; restartPolicy {self.manifest.spec.restart_policy.value}"
        if decision.action is Action.WAIT and next_at:
            # An absolute time, not a countdown: the message stays the same while it waits.
            at = datetime.fromtimestamp(next_at, UTC).strftime("%H:%M:%SZ")
            delay = restart_delay(self.manifest.spec.backoff, self._engine.crashes)
            message = f"{message or 'ended'}{BACKOFF_MARK}{delay:g}s, next attempt at {at}"
        elif decision.reason == R.STARTING and self.status.health.message:
            message = f"waiting for the first successful probe: {self.status.health.message}"
        if message == decision.message:
            return decision
        return Decision(decision.action, decision.state, decision.reason, message, decision.stalled)

    def _update(self, obs: Observation, result: ProbeResult | None, act: bool) -> float:
        ep = self.manifest.spec.endpoint
        check = ep.effective_health_check() if ep else None
        if obs.endpoint_uri or obs.details:
            self._fill_endpoint(obs)
            self.status.runtime = obs.details
        if result is not None and check is not None:
            record_probe(self.status.health, check, result, utcnow())
        if exited(obs):
            self._account_exit(obs)
        if (
            act
            and self._engine.pending_update
            and self.manifest.spec.admin_state is AdminState.ACTIVE
        ):
            self._engine.pending_update = False
            self._launch(R.UPDATING)
            return STARTUP_PROBE_INTERVAL
        decision = self._decide(obs)
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
            self._launch(decision.reason)
            return STARTUP_PROBE_INTERVAL
        if decision.action is Action.STOP:
            self._stop_runtime(force=False)
            reset_health(self.status.health)
            self.ports.release(self.identity.key)
            if decision.state is ServiceState.ERROR:
                # Stopped by Steward and not to be restarted (restartPolicy Never).
                self._engine.last_run = LastRun(RunEnd.KILLED, R.UNHEALTHY, decision.message)
                self._engine.next_restart_at = None
                self.save()
            else:
                self._engine.reset_loop()  # adminState inactive: the next start is a fresh one
                self._set(Decision(Action.NONE, ServiceState.INACTIVE, R.STOPPED))
            return 0.0
        if decision.action is Action.RESTART:
            self._stop_runtime(force=False)
            self._engine.last_run = LastRun(RunEnd.KILLED, R.UNHEALTHY, decision.message)
            self._schedule_restart(time.monotonic() - self._run_started)
            self.status.last_error = decision.message
            self.save()
            return 0.0
        next_at = self._engine.next_restart_at
        if decision.action is Action.WAIT and next_at:
            return max(0.05, next_at - time.time())
        if check is not None and obs.running:
            if self.status.health.state is HealthState.UNKNOWN:
                return STARTUP_PROBE_INTERVAL
            return max(0.05, check.period_seconds - (time.monotonic() - self._last_probe))
        return 1.0

    # ------------------------------------------------------------ public verbs
    def start(self, timeout: float = 30) -> bool:
        """Start (or adopt) and wait up to ``timeout`` s for active; False with last_error if not."""
        with self._lock:
            self.manifest.spec.admin_state = AdminState.ACTIVE
            self._engine.reset_loop()
            obs = self._observe()
            if not obs.running and not self._launch():
                return False
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
                            self._fail(obs.reason or "StartFailed", msg)
                    return False
                result = _run_coro(self.probe(obs)) if self._probe_due(obs) else None
                self._update(obs, result, act=False)
                if self.status.state is ServiceState.ACTIVE and (
                    self._probed
                    or time.monotonic() - self._run_started >= MIN_RUNNING_WITHOUT_PROBE
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
                time.sleep(min(STARTUP_PROBE_INTERVAL, remaining))

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
                self._fail("StopFailed", "still running after stop")
                return False
            self.ports.release(self.identity.key)
            reset_health(self.status.health)
            self._set(Decision(Action.NONE, ServiceState.INACTIVE, "Stopped"))
            return True

    def _grace(self) -> float:
        return float(getattr(self.flavor_spec, "stop_grace_period_seconds", 10.0))

    def update(self, manifest: dict[str, Any] | str | ManagedService) -> bool:
        """Take a new manifest; a changed spec replaces the running workload. True if replaced."""
        new = ManagedService.parse(manifest)
        with self._lock:
            old_hash = self.spec_hash
            self.manifest = new.model_copy(update={"status": None})
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
        spec = self.flavor_spec
        env_refs = any(e.value_from is not None for e in getattr(spec, "env", None) or [])
        return env_refs or bool(getattr(spec, "vars_from", None))

    def _references_digest(self, ctx: RuntimeContext) -> str:
        runtime = self.runtime
        saved, runtime.ctx = runtime.ctx, ctx
        try:
            return _digest(ctx.env) + runtime.inputs_digest()
        finally:
            runtime.ctx = saved

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

    def get_logs(self, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """Log lines of the workload (secret values redacted)."""
        runtime = self.runtime
        for line in runtime.logs(tail=tail, follow=follow):
            yield runtime.ctx.redact(line)

    def supervise(self, stop: threading.Event | None = None) -> None:
        """Run the control loop in this thread until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            stop.wait(self.reconcile())
