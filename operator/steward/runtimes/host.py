"""What a host has and which flavors can run on it: the facts its agent registers.

Gathered from the host itself (cgroup-aware CPU count, memory, boot id) and from
each flavor's own fingerprint, so a new flavor reports itself without the agent
knowing it. Nothing here knows Kubernetes; the agent turns the facts into a
StewardNode status.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from steward.api.flavors import NAMES
from steward.runtimes.base import Fingerprint
from steward.runtimes.registry import runtime_class

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    boot_id: str
    cpus: int
    memory_bytes: int
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    """Per flavor name: can it run here now."""


def fingerprint(flavor: str) -> Fingerprint:
    """The flavor's own verdict; a broken fingerprint is an unhealthy flavor, not a crash."""
    try:
        return runtime_class(flavor).fingerprint()
    except Exception as exc:  # a flavor that cannot even say is not available
        return Fingerprint(False, "FingerprintFailed", f"{type(exc).__name__}: {exc}")


def gather(flavors: tuple[str, ...] = NAMES) -> HostFacts:
    """The host's facts now (a Docker ping and a PATH lookup: bounded, a few seconds at most)."""
    try:
        boot_id = BOOT_ID.read_text().strip()
    except OSError:
        boot_id = ""
    return HostFacts(
        hostname=socket.gethostname(),
        boot_id=boot_id,
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=int(psutil.virtual_memory().total),
        fingerprints={f: fingerprint(f) for f in flavors},
    )
