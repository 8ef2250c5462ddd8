"""A sandboxed process's environment: what the spec declares, never the operator's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from steward.runtimes.sandbox.model import DEFAULT_PATH

NEVER = re.compile(r"^(KUBERNETES_.*|DOCKER_HOST|DOCKER_CERT_PATH|DOCKER_TLS_VERIFY|KUBECONFIG)$")
"""Names that point at the operator's own credentials; dropped even when the spec sets them."""


def clean_environment(
    declared: Mapping[str, str], home: Path, steward: Mapping[str, str] | None = None
) -> dict[str, str]:
    """PATH, HOME, LANG, then the spec's resolved env (it may override those three), then
    Steward's own ``STEWARD_*`` variables."""
    env = {"PATH": DEFAULT_PATH, "HOME": str(home), "LANG": "C.UTF-8"}
    env.update({k: v for k, v in declared.items() if not NEVER.match(k)})
    for k, v in (steward or {}).items():
        if not k.startswith("STEWARD_"):
            raise ValueError(f"{k}: only STEWARD_* variables are Steward's own")
        env[k] = v
    return env
