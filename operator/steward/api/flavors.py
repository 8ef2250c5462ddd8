"""The flavor catalog: which kinds of ManagedService exist and what the API knows of each.

One list, read by the spec model (its exactly-one rule), the status and CRD
descriptions, the service-type registry and the runtime registry. What a
flavor can *do* (update in place, allocate a port...) is the runtime's
business: see ``steward.runtimes.base.Capabilities``.
"""

from __future__ import annotations

from dataclasses import dataclass

from steward.api.base import CamelModel, lookup
from steward.api.container import ContainerSpec
from steward.api.daemon import DaemonSpec
from steward.api.terraform import TerraformSpec


@dataclass(frozen=True)
class Flavor:
    """One kind of service, as the API sees it."""

    name: str
    """The flavor's name: ``status.flavor``, the runtime registry key, ``steward.runtimes.<name>``."""
    field: str
    """The attribute of ManagedServiceSpec (and key under ``spec:``) holding its spec."""
    model: type[CamelModel]
    """The pydantic model of that spec."""
    noun: str
    """What one service of this flavor is, in prose ("a local daemon")."""
    description: str
    """The service type's description ("A local daemon process")."""
    field_description: str
    """The description of the spec field (shown by ``kubectl explain``)."""
    listens_on_host: bool = True
    """It listens on a port of its host, so ``endpoint.expose: Cluster`` can put a Service
    in front of it (not Terraform, whose endpoint is whatever it created)."""


FLAVORS: tuple[Flavor, ...] = (
    Flavor(
        name="daemon",
        field="daemon",
        model=DaemonSpec,
        noun="a local daemon",
        description="A local daemon process",
        field_description="Run a local daemon process.",
    ),
    Flavor(
        name="container",
        field="container",
        model=ContainerSpec,
        noun="a Docker container",
        description="A Docker container",
        field_description="Run a Docker container.",
    ),
    Flavor(
        name="terraform",
        field="terraform",
        model=TerraformSpec,
        noun="a Terraform apply",
        description="Resources created by a Terraform apply",
        field_description="Apply a Terraform module.",
        listens_on_host=False,
    ),
)

NAMES: tuple[str, ...] = tuple(f.name for f in FLAVORS)
"""("daemon", "container", "terraform"), in the catalog's order."""


def by_name(name: str) -> Flavor:
    """The catalog entry for ``name``; KeyError lists the known ones."""
    return lookup(FLAVORS, lambda f: f.name, name, "flavor")


def one_of(words: list[str] | tuple[str, ...] | None = None, conjunction: str = "or") -> str:
    """``daemon, container or terraform`` (or the given words, joined the same way)."""
    items = list(NAMES if words is None else words)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
