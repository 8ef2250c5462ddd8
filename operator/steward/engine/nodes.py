"""A host's StewardNode status and its Lease's verdict, as pure functions.

After kubelet: the status is computed often (every ``status_interval``) but
written only when it changed or every ``report_interval`` (nodeStatusUpdateFrequency
10 s, nodeStatusReportFrequency 5 min), while liveness is the Lease's job alone
(renewed every 10 s, valid 40 s). A condition's lastTransitionTime moves only when
its status does, so an unchanged host writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from steward.api.container import parse_quantity
from steward.api.node import (
    NODE_READY,
    RUNTIME_CONDITIONS,
    SERVICES,
    AgentInfo,
    LogEndpoint,
    NodeAddress,
    StewardNodeStatus,
)
from steward.api.status import Condition
from steward.runtimes.host import HostFacts

AGENT_READY = "AgentReady"
AGENT_STOPPED = "AgentStopped"

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class NodeSettings:
    """What the agent was told about its host (flags), beside what it finds out itself."""

    name: str
    addresses: tuple[NodeAddress, ...] = ()
    max_services: int = 110
    """Like kubelet's maxPods: how many ManagedServices the host takes."""
    extended: dict[str, str] = field(default_factory=dict)
    """Extended resources (``nvidia.com/gpu: "2"``): capacity and allocatable alike."""
    reserved_cpu: str = "0"
    reserved_memory: str = "0"
    """Held back for the host itself (kubelet's system-reserved)."""
    version: str = ""
    lease_duration: float = 40.0
    renew_interval: float = 10.0
    status_interval: float = 10.0
    report_interval: float = 300.0
    log_endpoint: LogEndpoint | None = None
    """``--serve --log-port``: published in the status for `steward logs`."""


def _memory(quantity: Decimal) -> str:
    return f"{int(quantity) // 1024}Ki"


def _cpu(quantity: Decimal) -> str:
    milli = int(quantity * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def capacity(facts: HostFacts, settings: NodeSettings) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) as Kubernetes quantities."""
    cpus = Decimal(facts.cpus)
    memory = Decimal(facts.memory_bytes)
    cap = {"cpu": _cpu(cpus), "memory": _memory(memory), SERVICES: str(settings.max_services)}
    alloc = {
        "cpu": _cpu(max(Decimal(0), cpus - parse_quantity(settings.reserved_cpu))),
        "memory": _memory(max(Decimal(0), memory - parse_quantity(settings.reserved_memory))),
        SERVICES: str(settings.max_services),
    }
    for name, value in settings.extended.items():
        cap[name] = alloc[name] = value
    return cap, alloc


def _condition(
    prior: StewardNodeStatus | None,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    now: datetime,
) -> Condition:
    old = prior.condition(type_) if prior is not None else None
    since = old.last_transition_time if old is not None and old.status == status else None
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:1024],
        last_transition_time=since or now,
    )


def node_status(
    facts: HostFacts,
    settings: NodeSettings,
    prior: StewardNodeStatus | None,
    now: datetime,
    services: int = 0,
    started_at: datetime | None = None,
) -> StewardNodeStatus:
    """The status the agent reports for its host; ``prior`` keeps transition times."""
    cap, alloc = capacity(facts, settings)
    conditions = [
        _condition(prior, NODE_READY, "True", AGENT_READY, "the agent renews its Lease", now)
    ]
    for flavor, type_ in sorted(RUNTIME_CONDITIONS.items(), key=lambda kv: kv[1]):
        fp = facts.fingerprints.get(flavor)
        if fp is None:
            continue
        status: Status = "True" if fp.healthy else "False"
        conditions.append(_condition(prior, type_, status, fp.reason, fp.message, now))
    return StewardNodeStatus(
        addresses=list(settings.addresses),
        capacity=cap,
        allocatable=alloc,
        conditions=conditions,
        services=services,
        agent=AgentInfo(
            version=settings.version,
            hostname=facts.hostname,
            boot_id=facts.boot_id,
            started_at=started_at,
        ),
        log_endpoint=settings.log_endpoint,
    )


def stopped_status(prior: StewardNodeStatus, now: datetime) -> StewardNodeStatus:
    """What a cleanly stopping agent leaves: Ready=False (not Unknown: it said goodbye)."""
    ready = _condition(prior, NODE_READY, "False", AGENT_STOPPED, "the agent was stopped", now)
    rest = [c for c in prior.conditions if c.type != NODE_READY]
    return prior.model_copy(update={"conditions": [ready, *rest]})


def _comparable(status: StewardNodeStatus) -> dict[str, object]:
    data = status.model_dump(mode="json")
    for c in data["conditions"]:
        c.pop("last_transition_time", None)
    return data


def report_due(
    reported: StewardNodeStatus | None,
    current: StewardNodeStatus,
    reported_at: float | None,
    now: float,
    report_interval: float,
) -> bool:
    """Write the status when it changed, or when ``report_interval`` passed since the last write."""
    if reported is None or reported_at is None:
        return True
    if _comparable(reported) != _comparable(current):
        return True
    return now - reported_at >= report_interval


def lease_expired(renew_time: datetime | None, duration_seconds: float, now: datetime) -> bool:
    """A Lease not renewed within its duration (a host never renewed is expired)."""
    if renew_time is None:
        return True
    return now - renew_time > timedelta(seconds=duration_seconds)
