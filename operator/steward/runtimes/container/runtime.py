"""Docker containers on the local engine (ZenML's ContainerService).

One container per service, named ``steward-<namespace>.<name>`` and labelled
``steward.dev/managed=true``, ``steward.dev/service=<ns>/<name>`` and
``steward.dev/spec-hash=<hash>``, so a restarted Steward finds it again and
knows whether it was started from the current spec. Docker's restart policy
stays off: the engine restarts, with its back-off. A container carrying the
name but not our labels is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import docker.errors
import requests

from steward.api import reasons as R
from steward.api.container import ContainerSpec
from steward.api.state import ServiceState
from steward.runtimes.base import (
    Adoption,
    Capabilities,
    Fingerprint,
    NoPreviousRun,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFailure,
    RuntimeFile,
)
from steward.runtimes.container.config import (
    build,
    check_host_paths,
    check_ports_free,
    container_name,
    container_port,
    effective_hash,
)
from steward.runtimes.container.docker import connect, ensure_image, translated
from steward.runtimes.container.events import engine_events
from steward.runtimes.container.state import hash_of, host_port, is_ours, observation
from steward.runtimes.exits import ExitWatch
from steward.runtimes.logfile import tail_lines
from steward.runtimes.sandbox.fs import write_private

log = logging.getLogger(__name__)

FINGERPRINT_TIMEOUT = 3.0

KILL_WAIT = 10.0
"""Seconds to wait for the engine to reap a container after SIGKILL."""
CACHE_SECONDS = 10.0
"""The longest an inspect's answer is reused while the events stream reports nothing."""
PREVIOUS_LOG = "container.previous.log"
PREVIOUS_LINES = 10_000
"""How much of a removed container's log is kept for ``logs --previous``."""
POLL = 0.1
LIVE = ("running", "restarting", "paused")


class ContainerRuntime(Runtime):
    """A ManagedService as a Docker container; the Docker client is created on first use."""

    flavor = "container"
    capabilities: ClassVar[Capabilities] = Capabilities(allocates_port=True)
    spec: ContainerSpec

    @classmethod
    def fingerprint(cls) -> Fingerprint:
        """The engine answers a ping within FINGERPRINT_TIMEOUT."""
        try:
            client = connect(timeout=FINGERPRINT_TIMEOUT)
            try:
                version = client.version().get("Version", "")
            finally:
                client.close()
        except RuntimeFailure as exc:
            return Fingerprint(False, exc.reason, str(exc))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return Fingerprint(False, R.DOCKER_UNAVAILABLE, f"Docker engine: {exc}")
        return Fingerprint(True, "EngineReady", f"Docker engine {version}")

    def __init__(self, spec: ContainerSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self._docker: Any = None
        self._live_id: str | None = None
        """The id of our container as last seen live (start, observe, adopt): what to watch."""
        self._seen: tuple[str, tuple[int, int], float, Observation] | None = None
        """(id, events version, when, observation) of the last inspect that found it running."""

    # -- helpers ----------------------------------------------------------
    @property
    def name(self) -> str:
        return container_name(self.ctx)

    def _client(self) -> Any:
        if self._docker is None:
            self._docker = connect()
        return self._docker

    def _inspect(self) -> dict[str, Any] | None:
        """The container carrying our name (ours or not), or None."""
        with translated(f"cannot inspect container {self.name}", self.ctx.redact):
            try:
                attrs: dict[str, Any] = self._client().api.inspect_container(self.name)
            except docker.errors.NotFound:
                return None
        return attrs

    def _foreign(self) -> RuntimeFailure:
        return RuntimeFailure(
            f"a container named {self.name} exists but was not started by Steward for "
            f"{self.ctx.identity.key}; remove or rename it",
            reason=R.NAME_CONFLICT,
        )

    def _remove(self, container_id: str) -> None:
        with translated(f"cannot remove container {self.name}", self.ctx.redact):
            try:
                self._client().api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                return

    def _state(self, container_id: str) -> str:
        try:
            attrs = self._client().api.inspect_container(container_id)
        except docker.errors.NotFound:
            return "removed"
        return str(attrs["State"]["Status"])

    def _wait_until_stopped(self, container_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._state(container_id) not in LIVE:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)

    # -- interface --------------------------------------------------------
    def start(self) -> None:
        """Create and start the container; a running one from the same spec is kept."""
        cfg = build(self.spec, self.ctx)
        check_host_paths(cfg.host_paths)
        client = self._client()
        existing = self._inspect()
        if existing is not None:
            if not is_ours(existing, self.ctx.identity.key):
                raise self._foreign()
            same = hash_of(existing) == effective_hash(self.spec, self.ctx)
            port_ok = (
                self.ctx.port is None
                or host_port(existing, container_port(self.spec, self.ctx)) == self.ctx.port
            )
            if existing["State"]["Status"] == "running" and same and port_ok:
                return  # starting twice changes nothing
            self.stop()  # stale (exited) or from another spec: gracefully out of the way
        check_ports_free(cfg.publications)
        ensure_image(client, cfg.image, self.spec.image_pull_policy, self.ctx.redact)
        with translated(f"cannot create container {self.name}", self.ctx.redact):
            container = client.containers.create(**cfg.create_kwargs)
        try:
            with translated(f"cannot start container {self.name}", self.ctx.redact, R.START_FAILED):
                container.start()
        except RuntimeFailure:
            # A container that never ran is of no use to anyone: do not leave it behind.
            self._remove(container.id)
            raise
        self._live_id = container.id

    def stop(self, force: bool = False, grace: float | None = None) -> None:
        """stopSignal, up to ``grace`` seconds, SIGKILL; then remove. Nothing there is fine."""
        self._live_id = None
        attrs = self._inspect()
        if attrs is None or not is_ours(attrs, self.ctx.identity.key):
            return
        cid = attrs["Id"]
        if grace is None:
            grace = 0.0 if force else self.spec.stop_grace_period_seconds
        api = self._client().api
        with translated(f"cannot stop container {self.name}", self.ctx.redact):
            if attrs["State"]["Status"] in LIVE:
                if not force and grace > 0 and attrs["State"]["Status"] != "paused":
                    self._signal(cid, self.spec.stop_signal)
                    self._wait_until_stopped(cid, grace)
                if self._state(cid) in LIVE:
                    self._signal(cid, "SIGKILL")
                    if not self._wait_until_stopped(cid, KILL_WAIT):
                        raise RuntimeFailure(
                            f"container {self.name} still running {KILL_WAIT:.0f}s after SIGKILL",
                            reason=R.STOP_FAILED,
                        )
            self._keep_log(cid)
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(cid, force=True, v=True)

    previous_log = RuntimeFile(PREVIOUS_LOG)

    def _keep_log(self, cid: str) -> None:
        """The removed container's last lines, for ``logs --previous`` (kubelet keeps the dead
        container itself; Steward removes it, so that its name is free for the next one)."""
        try:
            lines = list(self._log_lines(cid, PREVIOUS_LINES, follow=False))
        except Exception:  # keeping a log must never keep a container from stopping
            log.warning("cannot keep the log of container %s", self.name, exc_info=True)
            return
        if not lines:
            return
        self.ctx.runtime_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.previous_log, "".join(line + "\n" for line in lines))

    def _signal(self, cid: str, sig: str) -> None:
        try:
            self._client().api.kill(cid, signal=sig)
        except docker.errors.APIError as exc:
            # Gone or "is not running": it raced us to the exit, which is what we wanted.
            if isinstance(exc, docker.errors.NotFound) or "not running" in str(exc).lower():
                return
            raise

    def observe_cached(self) -> Observation | None:
        """What the last inspect said, while Docker's events stream says nothing has
        happened to the container since (and for at most CACHE_SECONDS): a starting
        container's probes and a running one's steps cost no inspect call."""
        seen, cid = self._seen, self._live_id
        if seen is None or cid is None or seen[0] != cid:
            return None
        if time.monotonic() - seen[2] > CACHE_SECONDS:
            return None
        if engine_events(lambda: connect(timeout=None)).version(cid) != seen[1]:
            return None
        obs = seen[3]
        return replace(obs, details=dict(obs.details))

    def observe(self) -> Observation:
        """What Docker reports; INACTIVE when absent, ERROR (never raising) when unreachable."""
        cached = self.observe_cached()
        if cached is not None:
            return cached
        self._seen = None
        events = engine_events(lambda: connect(timeout=None))
        cid = self._live_id
        version = events.version(cid) if cid is not None else None  # before the inspect
        try:
            attrs = self._inspect()
        except RuntimeFailure as exc:
            self._live_id = None
            return Observation(ServiceState.ERROR, str(exc), reason=exc.reason)
        if attrs is None or not is_ours(attrs, self.ctx.identity.key):
            self._live_id = None
        if attrs is None:
            return Observation(ServiceState.INACTIVE, f"no container {self.name}")
        if not is_ours(attrs, self.ctx.identity.key):
            conflict = self._foreign()
            return Observation(ServiceState.ERROR, str(conflict), reason=conflict.reason)
        self._live_id = attrs["Id"] if attrs["State"]["Status"] in LIVE else None
        obs = observation(attrs, container_port(self.spec, self.ctx))
        obs.message = self.ctx.redact(obs.message)
        obs.details["specHash"] = hash_of(attrs)
        if (
            version is not None
            and attrs["Id"] == cid
            and obs.state is ServiceState.ACTIVE
            and not obs.reason
        ):
            seen = replace(obs, details=dict(obs.details))
            self._seen = (attrs["Id"], version, time.monotonic(), seen)
        return obs

    def adopt(self) -> Adoption:
        """ADOPTED: ours, running, same spec (and port); OUTDATED: ours but stale; else NOTHING.

        A container that has exited is not adopted: start() replaces it.
        """
        attrs = self._inspect()
        if attrs is None or not is_ours(attrs, self.ctx.identity.key):
            return Adoption.NOTHING
        if hash_of(attrs) != effective_hash(self.spec, self.ctx):
            return Adoption.OUTDATED
        published = host_port(attrs, container_port(self.spec, self.ctx))
        if self.ctx.port is not None and published != self.ctx.port:
            return Adoption.OUTDATED  # it serves where the engine will not look
        if attrs["State"]["Status"] not in LIVE:
            return Adoption.NOTHING
        self._live_id = attrs["Id"]
        return Adoption.ADOPTED

    def exit_watch(self) -> ExitWatch | None:
        """Fires on Docker's ``die`` event for our live container (one stream per engine)."""
        cid = self._live_id
        if cid is None:
            return None
        return engine_events(lambda: connect(timeout=None)).watch(cid)

    def watches_exit(self) -> bool:
        """Our live container, while the engine's events stream is connected."""
        if self._live_id is None:
            return False
        return engine_events(lambda: connect(timeout=None)).connected.is_set()

    def logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        """stdout and stderr lines from the engine's json-file log, oldest first; the previous
        run's from the copy kept when its container was removed."""
        if previous:
            if not self.previous_log.exists():
                raise NoPreviousRun(f"no previous container of {self.ctx.identity.key} was kept")
            return iter(tail_lines(self.previous_log, tail))
        attrs = self._inspect()
        if attrs is None or not is_ours(attrs, self.ctx.identity.key):
            return iter(())
        return self._log_lines(attrs["Id"], tail, follow)

    def _log_lines(self, cid: str, tail: int | None, follow: bool) -> Iterator[str]:
        # Following may idle for long: its own client, without a read timeout.
        client = connect(timeout=None) if follow else self._client()
        buf = b""
        try:
            with translated(f"cannot read logs of {self.name}", self.ctx.redact):
                try:
                    stream = client.api.logs(
                        cid,
                        stdout=True,
                        stderr=True,
                        stream=True,
                        follow=follow,
                        tail="all" if tail is None else max(0, tail),
                    )
                    for chunk in stream:
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            yield line.decode(errors="replace").rstrip("\r")
                except docker.errors.NotFound:
                    pass
                except requests.exceptions.ChunkedEncodingError:
                    pass  # the container went away while following
            if buf:
                yield buf.decode(errors="replace").rstrip("\r")
        finally:
            if follow:
                client.close()

    def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):  # closing must never fail the caller
                self._docker.close()
            self._docker = None
