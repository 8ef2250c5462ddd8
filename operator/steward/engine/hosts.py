"""Host health and failover, as the controller judges them: pure functions over what it saw.

After the node lifecycle controller: a host is *lost* when its Lease's ``renewTime`` has not
changed for ``grace`` seconds **on the controller's own monotonic clock** (the time it last
saw the value change, never the timestamp the host wrote: clocks of two hosts disagree, one
clock with itself does not). A Lease seen for the first time counts as renewed then, so a
controller that just started gives every host a full grace period before judging it.

The storm guard (the lifecycle controller's zone disruption, Nomad's ``max_client_disconnect``
caution): while more than ``storm_share`` of the hosts are lost at once, the likelier story is
that the controller (or the API server's network) is the one cut off, so nothing fails over;
and once such a storm ends, hosts get another grace period to renew before anything moves.

What happens to the services of a lost host is :func:`action`, by their failover policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from steward.api import reasons as R
from steward.api.node import NODE_READY, StewardNode
from steward.api.placement import Failover, FailoverPolicy
from steward.api.status import Condition

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
"""The taint an admin sets on a host known to be down (Kubernetes' non-graceful node
shutdown): every service there may move, whatever its policy."""

DEFAULT_GRACE = 50.0
"""node-monitor-grace-period's default."""
DEFAULT_MONITOR_PERIOD = 5.0
"""node-monitor-period's default: how often the controller lists the Leases."""
DEFAULT_STORM_SHARE = 0.5
"""More than this share of hosts lost at once: no failover."""


@dataclass(frozen=True)
class Seen:
    """One host's Lease as the controller last saw it."""

    renew_time: str
    """The Lease's renewTime as written (compared for change only, never as a time)."""
    at: float
    """The controller's monotonic clock when it first saw this renewTime."""


def observe(prior: Seen | None, renew_time: str, now: float) -> Seen:
    """The new sighting: the clock moves only when the value did."""
    if prior is not None and prior.renew_time == renew_time:
        return prior
    return Seen(renew_time, now)


def silent_for(seen: Seen | None, now: float, started: float) -> float:
    """Seconds since this host last renewed, by the controller's clock (a host without a
    Lease counts from the controller's start)."""
    return now - (seen.at if seen is not None else started)


def lost(seen: Seen | None, now: float, started: float, grace: float) -> bool:
    return silent_for(seen, now, started) > grace


@dataclass(frozen=True)
class Guard:
    """The storm guard's memory: when failover may happen again."""

    quiet_since: float
    """No failover before ``quiet_since + grace``: the controller's start, or the end of the
    last storm."""
    storm: bool = False


BLIND_PERIODS = 2.0
"""The controller is blind once it could not list the Leases for this many periods."""


def blind(last_good: float, now: float, period: float) -> bool:
    """Whether the controller itself went without a good list of the Leases (an apiserver
    outage, a controller paused or starved) for longer than ``BLIND_PERIODS`` periods."""
    return now - last_good > BLIND_PERIODS * period


def regained_sight(seen: dict[str, Seen], now: float) -> tuple[dict[str, Seen], Guard]:
    """After a blind spell, hosts are judged as if the controller had just started: every
    host was seen now and the storm guard waits a full grace again. The controller's own
    blindness is never a host's silence: after an outage every agent renews again, but not
    all before the first list that works, and a host counted silent since before the outage
    would look lost alone (no storm), and fail over."""
    return {n: Seen(s.renew_time, now) for n, s in seen.items()}, Guard(quiet_since=now)


def storm(total: int, lost_count: int, share: float) -> bool:
    """Too many hosts lost at once to believe them (every host lost included)."""
    return total > 0 and lost_count > 0 and lost_count / total > share


def guard(prior: Guard, total: int, lost_count: int, share: float, now: float) -> Guard:
    """The guard after this round: a storm holds failover, and its end restarts the wait."""
    if storm(total, lost_count, share):
        return replace(prior, storm=True)
    if prior.storm:
        return Guard(quiet_since=now, storm=False)
    return prior


def may_fail_over(g: Guard, now: float, grace: float) -> bool:
    return not g.storm and now - g.quiet_since > grace


class Action(StrEnum):
    NONE = "none"
    """The host is fine (or the service is not the controller's to judge)."""
    MARK_LOST = "mark-lost"
    """Ready=Unknown, reason NodeLost: nothing else."""
    REPLACE = "replace"
    """The host is fenced: unbind and release the epoch on its behalf, so it is bound
    elsewhere."""


def action(
    failover: Failover,
    host_lost: bool,
    silent: float,
    out_of_service: bool,
    allowed: bool,
) -> Action:
    """What the controller does with one service bound to a host silent for ``silent`` s.

    ``allowed`` is the storm guard's :func:`may_fail_over`; ``out_of_service`` the admin's
    taint on the host (it moves every policy's services, as Kubernetes' does for pods).
    """
    if not host_lost:
        return Action.NONE
    if not allowed:
        return Action.MARK_LOST
    if out_of_service:
        return Action.REPLACE
    if failover.policy is FailoverPolicy.AFTER_FENCING and silent >= failover.replace_after_seconds:
        return Action.REPLACE
    return Action.MARK_LOST


def fence_due(failover: Failover, since_renewal: float) -> bool:
    """The host's side of AfterFencing: stop the service now (``since_renewal`` by the host's
    own monotonic clock, from the start of its last renewal that succeeded)."""
    return (
        failover.policy is FailoverPolicy.AFTER_FENCING
        and since_renewal >= failover.fence_after_seconds
    )


def lost_hosts(
    seen: Mapping[str, Seen], hosts: Iterable[str], now: float, started: float, grace: float
) -> set[str]:
    return {h for h in hosts if lost(seen.get(h), now, started, grace)}


def lost_message(node: str, silent: float, grace: float) -> str:
    return (
        f"host {node} has not renewed its Lease for {silent:.0f} s (grace {grace:.0f} s); "
        "the service's state there is unknown"
    )


def replaced_message(node: str, silent: float, failover: Failover, out_of_service: bool) -> str:
    if out_of_service:
        return f"host {node} is tainted {OUT_OF_SERVICE}: moving the service elsewhere"
    return (
        f"host {node} silent for {silent:.0f} s: it stopped the service after "
        f"{failover.fence_after_seconds} s (AfterFencing); moving it elsewhere"
    )


def as_lost(node: StewardNode) -> StewardNode:
    """The host as placement must see it once lost: Ready=Unknown, whatever it last wrote."""
    others = [c for c in node.status.conditions if c.type != NODE_READY]
    ready = Condition(type=NODE_READY, status="Unknown", reason=R.NODE_STATUS_UNKNOWN)
    status = node.status.model_copy(update={"conditions": [ready, *others]})
    return node.model_copy(update={"status": status})
