"""Steward: run ManagedServices as daemons, containers or Terraform applies.

Usable as a Kubernetes operator (``steward run``), without a cluster
(``steward local``) or as a plain library::

    from steward import Service
    svc = Service.from_manifest(manifest, state_dir=path)
    svc.start(timeout=30)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from steward.api.state import ServiceState
    from steward.engine.service import Service

__all__ = ["Service", "ServiceState", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import steward.api` (the CRD generator, the models) stays light.
    if name == "Service":
        from steward.engine.service import Service

        return Service
    if name == "ServiceState":
        from steward.api.state import ServiceState

        return ServiceState
    raise AttributeError(name)
