"""Which Runtime class serves which flavor; imported lazily so `docker` loads only when used."""

from __future__ import annotations

import importlib
from typing import Any

from steward.runtimes.base import Runtime, RuntimeContext

_RUNTIMES: dict[str, str] = {
    "daemon": "steward.runtimes.daemon:DaemonRuntime",
    "container": "steward.runtimes.container:ContainerRuntime",
    "terraform": "steward.runtimes.terraform:TerraformRuntime",
}


def register_runtime(flavor: str, target: str) -> None:
    """Plug in a runtime class given as ``module:Class`` (a seed-style custom service type)."""
    _RUNTIMES[flavor] = target


def runtime_class(flavor: str) -> type[Runtime]:
    """The class for a flavor; KeyError lists the known ones."""
    try:
        target = _RUNTIMES[flavor]
    except KeyError:
        raise KeyError(f"no runtime for flavor {flavor!r} (known: {sorted(_RUNTIMES)})") from None
    module, _, attr = target.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module), attr)
    return cls


def make_runtime(flavor: str, spec: Any, ctx: RuntimeContext) -> Runtime:
    """Instantiate the runtime for ``flavor``."""
    return runtime_class(flavor)(spec, ctx)
