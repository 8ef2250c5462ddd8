"""The operator's configuration: one pydantic model, built once from flags and environment.

Environment variables are read here and nowhere else in the operator (the
chart sets them: STEWARD_TERRAFORM_BINARY, STEWARD_PEERING_PRIORITY...);
the model travels to the handlers in kopf's ``memo``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from steward.engine.fairness import default_cap
from steward.engine.store import default_state_dir

DEFAULT_WORKERS = {"daemon": 8, "container": 8, "terraform": 2}


class OperatorConfig(BaseModel):
    """Everything `steward run` is told, by flags or by the chart's environment."""

    model_config = ConfigDict(frozen=True)

    kubeconfig: str | None = None
    state_dir: Path = Field(default_factory=default_state_dir)
    namespaces: tuple[str, ...] = ()
    peering: str | None = None
    peering_priority: str = ""
    """kopf priority: "" (kopf's default), "random" or a number."""
    liveness: str | None = None
    metrics_port: int = 0
    metrics_addr: str = "0.0.0.0"
    workers: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_WORKERS))
    workers_per_namespace: dict[str, int] = Field(default_factory=dict)
    """Per flavor, how many of its workers one namespace may hold at once (unset: half)."""
    terraform_binary: str = ""
    """Install-wide default for spec.terraform.binary: auto | terraform | tofu | bundled."""
    terraform_state_backend: str = ""
    """Install-wide default state backend for Terraform: local | kubernetes."""
    watch_server_timeout: int = 270
    watch_client_timeout: int = 300
    sandbox: bool = False
    """Run each daemon and Terraform command as its own uid, clean env, own cgroup (needs
    root or CAP_SETUID/SETGID/KILL and writable cgroups)."""
    sandbox_uid_start: int = 0x70000000
    sandbox_uid_count: int = 65536
    terraform_service_account: str = "steward-terraform"
    """In a sandbox, the ServiceAccount of each namespace whose token Terraform's kubernetes
    backend uses (never the operator's own credentials)."""
    enforce_policy: bool = False
    """Check StewardPolicies in the operator too, before every start (fails closed)."""
    node: str | None = None
    """An agent's StewardNode: serve only the ManagedServices bound to it (a server-side field
    selector on status.placement.nodeName). None: every one, placement ignored (`steward run`)."""
    host_ip: str | None = None
    """The address pods reach this host on (an agent's first ``--address``, the chart's
    ``status.podIP``): ``endpoint.expose: Cluster`` services bind and are probed there, and
    their status names the Service. None: the loopback, and no Service is named."""
    log_port: int = 0
    """An agent's HTTPS log endpoint (`steward logs` from anywhere); 0: none."""
    log_address: str = "0.0.0.0"
    log_cert_file: Path | None = None
    log_key_file: Path | None = None
    client_ca_file: Path | None = None
    """Client certificates signed by this CA authenticate at the log endpoint (as at the
    apiserver); bearer tokens always do, through a TokenReview."""
    lease_namespace: str = "kube-node-lease"
    node_monitor_period: float = 5.0
    """`steward controller`: how often it lists the agents' Leases (node-monitor-period)."""
    node_grace: float = 50.0
    """`steward controller`: a host whose Lease did not change for this long, by the
    controller's own clock, is lost (node-monitor-grace-period)."""
    storm_share: float = 0.5
    """`steward controller`: more than this share of hosts lost at once: no failover."""
    instance: str = Field(default_factory=socket.gethostname)
    """Reported as the Events' reportingInstance (the pod name in a cluster)."""

    def namespace_cap(self, flavor: str) -> int:
        """The most tasks one namespace runs at once in ``flavor``'s pools."""
        return self.workers_per_namespace.get(flavor) or default_cap(self.workers[flavor])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> OperatorConfig:
        """Flags win over the environment; unset flags (None) fall back to it."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "kubeconfig": env.get("KUBECONFIG") or None,
            "peering_priority": env.get("STEWARD_PEERING_PRIORITY", ""),
            "terraform_binary": env.get("STEWARD_TERRAFORM_BINARY", ""),
            "terraform_state_backend": env.get("STEWARD_TERRAFORM_STATE_BACKEND", ""),
            "terraform_service_account": env.get(
                "STEWARD_TERRAFORM_SERVICE_ACCOUNT", "steward-terraform"
            ),
            "watch_server_timeout": int(env.get("STEWARD_WATCH_SERVER_TIMEOUT", "270")),
            "watch_client_timeout": int(env.get("STEWARD_WATCH_CLIENT_TIMEOUT", "300")),
        }
        if env.get("STEWARD_STATE_DIR"):
            values["state_dir"] = Path(env["STEWARD_STATE_DIR"])
        if env.get("STEWARD_METRICS_PORT"):
            values["metrics_port"] = int(env["STEWARD_METRICS_PORT"])
        if env.get("STEWARD_HOST_IP"):
            values["host_ip"] = env["STEWARD_HOST_IP"]
        if env.get("STEWARD_METRICS_ADDR"):
            values["metrics_addr"] = env["STEWARD_METRICS_ADDR"]
        if env.get("STEWARD_ENFORCE_POLICY", "").lower() in ("1", "true", "yes"):
            values["enforce_policy"] = True
        if env.get("STEWARD_SANDBOX", "").lower() in ("1", "true", "yes"):
            values["sandbox"] = True
        if env.get("STEWARD_SANDBOX_UIDS"):  # START-COUNT, e.g. 1879048192-65536
            start, _, count = env["STEWARD_SANDBOX_UIDS"].partition("-")
            values["sandbox_uid_start"], values["sandbox_uid_count"] = int(start), int(count)
        if env.get("HOSTNAME"):
            values["instance"] = env["HOSTNAME"]
        values["workers"] = {
            **DEFAULT_WORKERS,
            **_per_flavor(env, "WORKERS", flags.pop("workers", None)),
        }
        values["workers_per_namespace"] = _per_flavor(
            env, "WORKERS_PER_NAMESPACE", flags.pop("workers_per_namespace", None)
        )
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)


def _per_flavor(
    env: Mapping[str, str], suffix: str, flags: Mapping[str, int | None] | None
) -> dict[str, int]:
    """``STEWARD_<FLAVOR>_<SUFFIX>`` for each flavor, overridden by the flags that are set."""
    out = {
        flavor: int(env[f"STEWARD_{flavor.upper()}_{suffix}"])
        for flavor in DEFAULT_WORKERS
        if env.get(f"STEWARD_{flavor.upper()}_{suffix}")
    }
    out.update({k: v for k, v in (flags or {}).items() if v})
    return out
