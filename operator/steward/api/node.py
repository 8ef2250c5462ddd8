"""StewardNode: one host that runs ManagedServices, registered by its agent.

Cluster-scoped like a Node. The spec belongs to admins (cordon, taints, like
`kubectl cordon` / `kubectl taint`); the status belongs to the host's agent:
where pods reach it, what it has, and which runtimes work there. A failing
Docker engine is a condition on a live host, never a lost host: whether the
host is alive is its Lease's business alone (renewed from the host itself).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from steward.api.base import CamelModel, name_and_labels
from steward.api.status import Condition

NODE_KIND = "StewardNode"
NODE_PLURAL = "stewardnodes"
NODE_SINGULAR = "stewardnode"
NODE_SHORT_NAMES = ["snode"]

NODE_READY = "Ready"
"""The agent renews its Lease and reports (Unknown once the Lease has run out)."""
DOCKER_READY = "DockerReady"
TERRAFORM_READY = "TerraformReady"
RUNTIME_CONDITIONS = {"container": DOCKER_READY, "terraform": TERRAFORM_READY}
"""Which condition says a flavor can run on the host (daemons need nothing but the host)."""

SERVICES = "services"
"""The resource name of how many ManagedServices a host takes (like kubelet's `pods`)."""

QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Taint(CamelModel):
    """Repels services that do not tolerate it, as a Node taint repels pods."""

    key: str = Field(
        min_length=1,
        max_length=316,
        pattern=QUALIFIED_NAME,
        description="Taint key, e.g. gpu or example.com/gpu (a qualified name).",
    )
    value: str = Field(default="", max_length=63, description="Taint value (may be empty).")
    effect: TaintEffect = Field(
        description="NoSchedule: never bind services that do not tolerate it; "
        "PreferNoSchedule: avoid; NoExecute: also move away what is bound (by its failover "
        "policy)."
    )


class StewardNodeSpec(CamelModel):
    """What admins decide about a host."""

    unschedulable: bool = Field(
        default=False,
        description="No new services are bound here (`steward drain` sets it); what runs stays.",
    )
    taints: list[Taint] = Field(default_factory=list, max_length=32, description="Taints.")


class NodeAddress(CamelModel):
    type: Literal["InternalIP", "ExternalIP", "Hostname"] = Field(description="Address kind.")
    address: str = Field(min_length=1, max_length=253, description="The address.")


class AgentInfo(CamelModel):
    version: str = Field(default="", description="Steward version of the agent.")
    hostname: str = Field(default="", description="The host's own name.")
    boot_id: str = Field(default="", description="Changes when the host reboots.")
    started_at: datetime | None = Field(default=None, description="When the agent started.")


class LogEndpoint(CamelModel):
    """Where the agent serves its services' logs (like a Node's daemonEndpoints)."""

    port: int = Field(ge=1, le=65535, description="HTTPS port on the host's addresses.")
    certificate: str = Field(
        max_length=16384,
        description="The agent's self-signed serving certificate (PEM): `steward logs` trusts "
        "this one and nothing else for the host.",
    )


class StewardNodeStatus(CamelModel):
    """What the host's agent reports."""

    addresses: list[NodeAddress] = Field(
        default_factory=list, description="Where pods and other hosts reach the host's services."
    )
    capacity: dict[str, str] = Field(
        default_factory=dict,
        description="What the host has: cpu, memory, services and extended resources "
        "(e.g. nvidia.com/gpu), as resource quantities.",
    )
    allocatable: dict[str, str] = Field(
        default_factory=dict, description="What of the capacity ManagedServices may request."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description=f"{NODE_READY}, {DOCKER_READY}, {TERRAFORM_READY}."
    )
    services: int = Field(default=0, description="ManagedServices bound to this host.")
    agent: AgentInfo = Field(default_factory=AgentInfo, description="The agent.")
    log_endpoint: LogEndpoint | None = Field(
        default=None,
        description="`steward agent --serve --log-port`: its HTTPS log endpoint (every request "
        "authorized by a SubjectAccessReview of get managedservices/log).",
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class NodeMeta(CamelModel):
    """The part of a StewardNode's metadata placement reads (the rest is dropped by ``parse``)."""

    name: str = Field(min_length=1, max_length=253, description="The host's name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels (nodeSelector).")


class StewardNode(CamelModel):
    """A StewardNode object as read from the cluster: what the controller places by."""

    api_version: Literal["steward.dev/v1alpha1"] = Field(
        default="steward.dev/v1alpha1", description="steward.dev/v1alpha1"
    )
    kind: Literal["StewardNode"] = Field(default="StewardNode", description=NODE_KIND)
    metadata: NodeMeta = Field(description="Name and labels.")
    spec: StewardNodeSpec = Field(default_factory=StewardNodeSpec, description="Admins' part.")
    status: StewardNodeStatus = Field(
        default_factory=StewardNodeStatus, description="The agent's part (empty until it reports)."
    )

    @property
    def name(self) -> str:
        return self.metadata.name

    @classmethod
    def parse(cls, data: object) -> StewardNode:
        """A dict from the API (unknown metadata ignored) or an instance."""
        if isinstance(data, StewardNode):
            return data
        if isinstance(data, dict):
            data = {
                **name_and_labels(data),
                "spec": data.get("spec") or {},
                "status": data.get("status") or {},
            }
        return cls.model_validate(data)
