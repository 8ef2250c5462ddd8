"""The small interface every runtime implements: start, stop, observe, logs, adopt.

Runtimes know nothing of Kubernetes: they get a resolved spec and a context
(identity, private directory, resolved environment, chosen port) and report
what they see. Decisions (restart or not, when, what status to show) live in
``steward.engine``.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, overload, runtime_checkable

from steward.api.state import ServiceState
from steward.runtimes.exits import ExitWatch
from steward.runtimes.sandbox.model import Sandbox


class RuntimeFailure(Exception):
    """A runtime could not do what was asked; the message is shown to the user as is."""

    def __init__(self, message: str, reason: str = "RuntimeError") -> None:
        super().__init__(message)
        self.reason = reason


class NoPreviousRun(LookupError):
    """``logs(previous=True)`` of a workload that has not been restarted (kubectl's "previous
    terminated container not found")."""


@dataclass(frozen=True)
class ServiceIdentity:
    """Who a service is: namespace and name, as on the resource."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def slug(self) -> str:
        """A name safe for files, containers and Terraform workspaces (``ns.name``)."""
        return re.sub(r"[^a-z0-9.-]", "-", f"{self.namespace}.{self.name}".lower())


@runtime_checkable
class Resolver(Protocol):
    """Secrets and ConfigMaps of the service's own namespace, for env valueFrom and varsFrom.

    One per service, given by the adapter (the cluster's objects, the manifest files'
    objects, or a test's dict); runtimes never reach for a global."""

    def read(self, kind: str, name: str) -> Mapping[str, str] | None:
        """The data of Secret (kind "secret") or ConfigMap ("configMap") ``name``; None if absent."""
        ...


@dataclass(frozen=True)
class ClusterCredentials:
    """An API server and a bearer token scoped to one namespace (never the operator's own)."""

    server: str
    token: str
    ca_pem: str = ""
    expires_at: float = 0.0
    """time.time() after which the token is no longer valid."""


class CredentialSource(Protocol):
    """Where a sandboxed service gets the credentials its own work needs (Terraform's
    kubernetes backend), given by the adapter: a token of the namespace's ServiceAccount."""

    def backend_credentials(self) -> ClusterCredentials | None:
        """Fresh credentials, or None when the namespace provides none."""
        ...


@dataclass(frozen=True)
class FencedHolders:
    """Where this service ran before its binding here, and when that binding began: by then
    the controller had seen those hosts fenced (or released), so nothing they started then
    can still hold anything."""

    hosts: frozenset[str]
    """Their host names (a Terraform lock's ``Who`` is ``user@hostname``)."""
    before: datetime
    """When the binding this host holds was made (``status.placement.boundAt``)."""


@dataclass
class RuntimeContext:
    """What the engine hands a runtime: nothing here needs Kubernetes to exist."""

    identity: ServiceIdentity
    runtime_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    """Resolved variables for `$(VAR)` expansion and the process environment (PORT included)."""
    port: int | None = None
    host: str = "127.0.0.1"
    spec_hash: str = ""
    secret_values: frozenset[str] = frozenset()
    """Values that must never be logged or reported (resolved from Secrets)."""
    labels: dict[str, str] = field(default_factory=dict)
    resolver: Resolver | None = None
    """Reads the namespace's Secrets/ConfigMaps (Terraform varsFrom); None: none available."""
    sandbox: Sandbox | None = None
    """Own uid, clean env, cgroup limits for the service's processes; None: run as the caller
    (library and local mode)."""
    credentials: CredentialSource | None = None
    """In a sandbox: the namespace's credentials for the kubernetes state backend."""
    fenced: FencedHolders | None = None
    """A host agent's proof, after a failover, that the earlier holders are gone; None: no
    such proof (one host, a library caller), and only a provably dead local run's Terraform
    state lock is ever broken."""
    log_hub_dir: Path | None = None
    """Where the state directory's one log writer listens (runtimes/loghub.py); None: each
    daemon gets a writer process of its own."""

    def redact(self, text: str) -> str:
        """Replace every secret value in ``text`` with ``***``."""
        for value in sorted(self.secret_values, key=len, reverse=True):
            if value:
                text = text.replace(value, "***")
        return text


@dataclass
class Observation:
    """What a runtime sees right now.

    ``state`` is ACTIVE while the workload runs (health is the engine's job),
    PENDING_STARTUP while it is coming up, INACTIVE when nothing runs, ERROR
    when it is broken. ``exit_code``/``finished_at`` describe the last run
    that ended, so the engine can apply the restart policy.
    """

    state: ServiceState
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    endpoint_uri: str | None = None
    """A URI the runtime itself knows (a Terraform output); overrides protocol://host:port."""
    reason: str = ""

    @property
    def running(self) -> bool:
        return self.state in (ServiceState.ACTIVE, ServiceState.PENDING_STARTUP)


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can do, declared instead of guessed from its flavor or its attributes.

    After Nomad's ``plugins/drivers.Capabilities``: the engine and the adapters
    read these facts, never ``flavor == "terraform"`` or ``getattr(runtime, ...)``.
    Every field defaults to False; a runtime sets what it does.
    """

    updates_in_place: bool = False
    """A changed spec converges with another ``start()`` (a Terraform apply): the engine
    does not stop the workload first, and an OUTDATED adoption is re-started, not replaced."""
    allocates_port: bool = False
    """The engine picks the endpoint's port (``endpoint.port``/``allocatePort``), passes it as
    ``$(PORT)`` and ``ctx.port``, and renders ``protocol://host:port`` (daemon, container)."""
    endpoint_from_outputs: bool = False
    """The endpoint URI comes from the runtime (``Observation.endpoint_uri``, a Terraform
    output), never from protocol://host:port; no port is chosen for it."""
    has_outputs: bool = False
    """The runtime has named outputs (``outputs(include_sensitive=...)``) that an adapter may
    publish, e.g. the k8s adapter's outputs Secret (Terraform)."""
    cheap_observe: bool = False
    """``observe()`` answers from memory without blocking I/O (a cached pid record and
    ``Popen.poll()``): the engine calls it on its event loop, not in a worker thread."""


@dataclass(frozen=True)
class Fingerprint:
    """A flavor's availability on a host: a condition's status, reason and message."""

    healthy: bool
    reason: str
    message: str


class Adoption(StrEnum):
    """Outcome of looking for what an earlier Steward process started."""

    NOTHING = "nothing"
    ADOPTED = "adopted"
    OUTDATED = "outdated"
    """Found, but started from another spec: the caller stops it and starts anew."""


class Runtime(abc.ABC):
    """One running (or not) instance of a flavor of service."""

    flavor: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities(allocates_port=True)
    """Overridden by each runtime; this default is what the engine assumes of a runtime
    that declares nothing (a registered custom flavor): a port chosen, protocol://host:port."""

    def __init__(self, spec: Any, ctx: RuntimeContext) -> None:
        self.spec = spec
        self.ctx = ctx

    @abc.abstractmethod
    def start(self) -> None:
        """Launch; returns once launched (not healthy). Raises RuntimeFailure."""

    @abc.abstractmethod
    def stop(self, force: bool = False, grace: float | None = None) -> None:
        """Stop what was launched; idempotent. ``grace`` overrides the spec's period."""

    @abc.abstractmethod
    def observe(self) -> Observation:
        """Report the current state; cheap, never raises for an absent workload."""

    @abc.abstractmethod
    def logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        """Log lines, oldest first; ``follow`` keeps yielding until the workload ends;
        ``previous``: the run before the current one (raises NoPreviousRun when none was kept).
        Raises before returning, never while iterating, so a server can still answer 404."""

    @abc.abstractmethod
    def adopt(self) -> Adoption:
        """Take over what an earlier Steward process started, instead of a second copy."""

    @classmethod
    def fingerprint(cls) -> Fingerprint:
        """Whether this flavor can run on this host now (Nomad's driver fingerprint); a host's
        agent reports it as a condition. Cheap and bounded: a few seconds at most."""
        return Fingerprint(True, "Available", "")

    @property
    def updates_in_place(self) -> bool:
        """``capabilities.updates_in_place``, under the name the engine reads today."""
        return self.capabilities.updates_in_place

    def observe_cached(self) -> Observation | None:
        """What ``observe()`` would answer, from memory and without blocking I/O; None: call
        ``observe()`` (in a worker thread). A daemon this runtime tracks answers here in one
        syscall (``Popen.poll()``/its pidfd) while it runs; an exit always goes to observe()."""
        return None

    def exit_watch(self) -> ExitWatch | None:
        """A new watch that fires once when what runs now ends (the caller closes it).

        Called often, so cheap and non-blocking: it answers from what the last
        ``observe()``/``start()``/``adopt()`` saw. None: nothing runs, or this runtime
        cannot tell (the engine then learns of an end at its next reconcile)."""
        return None

    def watches_exit(self) -> bool:
        """Whether :meth:`exit_watch` would fire reliably for what runs now (a pidfd, a
        connected events stream): the engine then looks at a running workload without
        probes only rarely, since its end wakes the loop. Cheap; False when unsure."""
        return False

    def inputs_digest(self) -> str:
        """A digest of inputs the runtime resolves itself (Terraform varsFrom); "" if none."""
        return ""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Cut short a blocking start() running in another thread (called without locks)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and handles; the workload keeps running."""


class RuntimeFile:
    """A read-only attribute of a runtime: the file ``name`` in its ``ctx.runtime_dir``, as
    ``pid_file = RuntimeFile("daemon.pid")``. Read at each access, so a new ``ctx`` counts."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> RuntimeFile: ...
    @overload
    def __get__(self, obj: Runtime, owner: type | None = None) -> Path: ...
    def __get__(self, obj: Runtime | None, owner: type | None = None) -> Path | RuntimeFile:
        if obj is None:
            return self
        return obj.ctx.runtime_dir / self.name

    def __set__(self, obj: Runtime, value: Path) -> None:
        raise AttributeError(f"{self.name} of a runtime is not assignable")


def spec_hash(spec: Any) -> str:
    """A stable short hash of a spec (pydantic model or JSON-able value)."""
    data = spec.model_dump(mode="json", by_alias=True) if hasattr(spec, "model_dump") else spec
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
