"""ManagedService documents and specs the tests build."""

from __future__ import annotations

import sys
from typing import Any

API_VERSION = "steward.dev/v1alpha1"


def msvc(name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """A ManagedService; without ``namespace`` its metadata names none (kubectl -n decides)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": "ManagedService", "metadata": metadata, "spec": spec}


def manifest(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    """A ManagedService in ``namespace`` (the local, non-Kubernetes tests use "default")."""
    return msvc(name, spec, namespace)


def http_daemon_spec(extra_args: list[str] | None = None) -> dict[str, Any]:
    """A daemon serving HTTP on $(PORT) (python -m http.server), health-checked on /."""
    return {
        "daemon": {
            "command": [
                sys.executable,
                "-m",
                "http.server",
                "$(PORT)",
                "--bind",
                "127.0.0.1",
                *(extra_args or []),
            ]
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


def never_unhealthy_spec(period: float, initial_backoff: float) -> dict[str, Any]:
    """``restartPolicy: Never`` over an HTTP daemon whose probe path answers 404."""
    spec = http_daemon_spec()
    spec["endpoint"]["healthCheck"] = {
        "http": {"path": "/absent", "expectedStatus": 200},
        "periodSeconds": period,
        "failureThreshold": 2,
    }
    spec["restartPolicy"] = "Never"
    spec["backoff"] = {"initialSeconds": initial_backoff}
    return spec


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A (cluster-scoped) StewardPolicy."""
    return {
        "apiVersion": API_VERSION,
        "kind": "StewardPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
