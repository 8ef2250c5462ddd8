"""``Workload``: what a manifest asks this host to run, as the runtime sees it.

The one place that turns a manifest into a ``RuntimeContext`` (the environment with its
resolved references, the endpoint on this host, the runtime directory) and into the
spec hash that decides when a running workload is out of date. ``Service`` holds one
and asks it; it knows nothing of status or of the control loop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.api.endpoint import EndpointSpec
from steward.api.manifest import ManagedService
from steward.engine.environment import resolve_env
from steward.engine.store import ServiceStore
from steward.runtimes.base import (
    CredentialSource,
    FencedHolders,
    Resolver,
    Runtime,
    RuntimeContext,
    ServiceIdentity,
    spec_hash,
)
from steward.runtimes.sandbox import Sandbox

LOOPBACK = "127.0.0.1"


def values_digest(env: dict[str, str]) -> str:
    """A hash of resolved values: compares them without keeping secrets around."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()


def endpoint_for_hash(ep: EndpointSpec | None) -> dict[str, Any] | None:
    """The endpoint as the spec hash sees it: ``expose`` counts only when set, so adding
    the field did not change the hash (and restart) of every service that runs today."""
    if ep is None:
        return None
    return ep.model_dump(mode="json", exclude=None if ep.exposed else {"expose"})


@dataclass(frozen=True)
class HostContext:
    """What this host gives every workload it runs (all optional: the library has none)."""

    sandbox: Sandbox | None = None
    credentials: CredentialSource | None = None
    host_ip: str | None = None
    """Where ``expose: Cluster`` endpoints bind (an agent's first --address)."""
    fenced: FencedHolders | None = None
    """A host agent's proof that the hosts this ran on before were fenced (failover)."""


class Workload:
    """The manifest's runtime-facing facts on this host, rebuilt by ``take()`` on update."""

    def __init__(
        self, manifest: ManagedService, store: ServiceStore, resolver: Resolver, host: HostContext
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.host = host
        self.identity = ServiceIdentity(manifest.metadata.namespace, manifest.metadata.name)
        self.service_dir = store.service_dir(self.identity)
        self.take(manifest)

    def take(self, manifest: ManagedService) -> None:
        self.manifest = manifest
        spec_ep = manifest.spec.endpoint
        self.endpoint = spec_ep.on_host(self.host.host_ip) if spec_ep is not None else None
        """The endpoint as this host serves it (``expose: Cluster``: on ``host_ip``)."""
        self.service_host = (
            f"{manifest.metadata.name}.{manifest.metadata.namespace}.svc"
            if spec_ep is not None and spec_ep.exposed and self.host.host_ip
            else None
        )
        """The Service's DNS name, which status.endpoint.uri names; None: no Service."""

    @property
    def flavor(self) -> str:
        return self.manifest.spec.flavor

    @property
    def flavor_spec(self) -> Any:
        return getattr(self.manifest.spec, self.flavor)

    @property
    def probed(self) -> bool:
        return self.manifest.spec.endpoint is not None

    @property
    def runtime_dir(self) -> Path:
        if getattr(self.flavor_spec, "singleton", False):
            return self.store.state_dir
        return self.service_dir / "runtime"

    @property
    def spec_hash(self) -> str:
        """Hash of what a running workload depends on (not adminState or restart policy)."""
        return spec_hash(
            {
                self.flavor: self.flavor_spec.model_dump(mode="json"),
                "endpoint": endpoint_for_hash(self.manifest.spec.endpoint),
            }
        )

    @property
    def stop_grace(self) -> float:
        return float(getattr(self.flavor_spec, "stop_grace_period_seconds", 10.0))

    def context(self, port: int | None) -> RuntimeContext:
        """The runtime's context for a run on ``port``; resolving references may raise
        RuntimeFailure (a missing Secret or key)."""
        endpoint = self.endpoint
        base = {"PORT": str(port)} if port else {}
        if endpoint is not None and endpoint.exposed:
            base["HOST_IP"] = endpoint.host
        env_entries = getattr(self.flavor_spec, "env", None) or []
        env, secrets = resolve_env(env_entries, base, self.resolver)
        return RuntimeContext(
            identity=self.identity,
            runtime_dir=self.runtime_dir,
            env=env,
            port=port,
            host=endpoint.host if endpoint else LOOPBACK,
            spec_hash=self.spec_hash,
            secret_values=frozenset(secrets),
            resolver=self.resolver,
            sandbox=self.host.sandbox,
            credentials=self.host.credentials,
            fenced=self.host.fenced,
            log_hub_dir=self.store.log_hub_dir,
        )

    @property
    def has_references(self) -> bool:
        """The spec takes values from Secrets or ConfigMaps (env valueFrom, Terraform varsFrom)."""
        spec = self.flavor_spec
        env_refs = any(e.value_from is not None for e in getattr(spec, "env", None) or [])
        return env_refs or bool(getattr(spec, "vars_from", None))

    @staticmethod
    def references_digest(runtime: Runtime, ctx: RuntimeContext) -> str:
        """What the references resolve to under ``ctx``: the env and the runtime's own inputs."""
        saved, runtime.ctx = runtime.ctx, ctx
        try:
            return values_digest(ctx.env) + runtime.inputs_digest()
        finally:
            runtime.ctx = saved
