"""Which Runtime class serves which flavor; imported lazily so `docker` loads only when used.

Each flavor of the catalog (``steward.api.flavors``) is served by the package
``steward.runtimes.<flavor>``, which exports ``<Flavor>Runtime``.
"""

from __future__ import annotations

import importlib
from typing import Any

from steward.api.flavors import NAMES
from steward.runtimes.base import Runtime, RuntimeContext

_RUNTIMES: dict[str, str] = {
    name: f"steward.runtimes.{name}:{name.capitalize()}Runtime" for name in NAMES
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
