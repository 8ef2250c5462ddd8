"""What `docker inspect` says, as an Observation the engine understands.

Docker states: created, running, restarting, paused, removing, exited, dead.
Running is ACTIVE (health is the engine's business); an exit is INACTIVE
with code 0 and ERROR otherwise, carrying the exit code, the finish time and
Docker's own error (OOMKilled, a missing executable) in the message.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from steward.api import reasons as R
from steward.api.state import ServiceState
from steward.runtimes.base import Observation
from steward.runtimes.container.config import LABEL_MANAGED, LABEL_SERVICE, LABEL_SPEC_HASH
from steward.runtimes.process import describe_exit


def parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 nanosecond times; the zero time means never."""
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    offset = ""
    for sep in ("+", "-"):
        if sep in frac:
            frac, _, rest = frac.partition(sep)
            offset = sep + rest
    try:
        value = datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}{offset}")
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def host_port(attrs: dict[str, Any], container_port: int | None) -> int | None:
    """The host port the endpoint's container port is published on (configured binding)."""
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    keys = [f"{container_port}/tcp"] if container_port else list(bindings)
    for key in keys:
        for b in bindings.get(key) or []:
            with contextlib.suppress(TypeError, ValueError):
                return int(b.get("HostPort"))
    if (attrs.get("HostConfig") or {}).get("NetworkMode") == "host":
        return container_port
    return None


def is_ours(attrs: dict[str, Any], service_key: str) -> bool:
    """Managed by Steward, for this very service."""
    lbl = (attrs.get("Config") or {}).get("Labels") or {}
    return lbl.get(LABEL_MANAGED) == "true" and lbl.get(LABEL_SERVICE) == service_key


def hash_of(attrs: dict[str, Any]) -> str:
    return str(((attrs.get("Config") or {}).get("Labels") or {}).get(LABEL_SPEC_HASH, ""))


def observation(attrs: dict[str, Any], container_port: int | None) -> Observation:
    """Map one inspected container (ours) to an Observation."""
    st = attrs.get("State") or {}
    status = str(st.get("Status", "unknown"))
    details = {
        "containerId": attrs.get("Id", ""),
        "containerName": str(attrs.get("Name", "")).lstrip("/"),
        "image": (attrs.get("Config") or {}).get("Image", ""),
        "hostPort": host_port(attrs, container_port),
        "dockerState": status,
    }
    started = parse_time(st.get("StartedAt"))
    finished = parse_time(st.get("FinishedAt"))
    code = st.get("ExitCode")
    error = str(st.get("Error") or "").strip()
    if status == "running":
        return Observation(ServiceState.ACTIVE, "container is running", details, started_at=started)
    if status == "created":
        if error:  # start failed; the container never ran
            return Observation(
                ServiceState.ERROR,
                f"container failed to start: {error}",
                details,
                reason=R.CONTAINER_ERROR,
            )
        return Observation(ServiceState.PENDING_STARTUP, "container created", details)
    if status == "restarting":
        return Observation(ServiceState.PENDING_STARTUP, "container restarting", details)
    if status == "removing":
        return Observation(ServiceState.PENDING_SHUTDOWN, "container being removed", details)
    if status == "paused":
        return Observation(
            ServiceState.ERROR,
            "container is paused (docker unpause resumes it)",
            details,
            started_at=started,
            reason=R.PAUSED,
        )
    exit_code = int(code) if isinstance(code, int) else None
    if st.get("OOMKilled"):  # Docker's State field
        limit = ((attrs.get("HostConfig") or {}).get("Memory")) or 0
        within = f" of its {limit // (1024 * 1024)}Mi memory limit" if limit else ""
        message = f"OOMKilled: out of memory{within}; {describe_exit(exit_code)}"
        reason = R.OOM_KILLED
    elif status == "dead":
        message = (
            f"container is dead (Docker could not remove or stop it){': ' + error if error else ''}"
        )
        reason = R.CONTAINER_DEAD
    elif error:
        message = f"{describe_exit(exit_code)}: {error}"
        reason = R.CONTAINER_ERROR
    else:
        message = describe_exit(exit_code)
        reason = R.COMPLETED if exit_code == 0 else R.CONTAINER_EXITED
        limit = ((attrs.get("HostConfig") or {}).get("Memory")) or 0
        if exit_code == 137 and limit:
            # Docker misses OOM kills that happen before it watches the cgroup: say so.
            message += f"; possibly out of memory (limit {limit // (1024 * 1024)}Mi)"
    failed = reason != R.COMPLETED
    return Observation(
        ServiceState.ERROR if failed else ServiceState.INACTIVE,
        message,
        details,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished or datetime.now(UTC),
        reason=reason,
    )
