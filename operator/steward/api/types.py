"""Service type descriptors and their registry (the seed's ServiceType)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from steward.api.flavors import FLAVORS


class ServiceType(BaseModel):
    """Immutable, hashable descriptor of a kind of service."""

    model_config = ConfigDict(frozen=True)

    type: str
    flavor: str
    name: str = ""
    description: str = ""


_REGISTRY: dict[tuple[str, str], ServiceType] = {}


def register_service_type(service_type: ServiceType) -> ServiceType:
    """Make a type known; registering the same one twice is harmless."""
    _REGISTRY[(service_type.type, service_type.flavor)] = service_type
    return service_type


def get_service_type(type_: str, flavor: str) -> ServiceType:
    """Look a type up; KeyError names what is known when it is not."""
    try:
        return _REGISTRY[(type_, flavor)]
    except KeyError:
        known = ", ".join(f"{t}/{f}" for t, f in sorted(_REGISTRY))
        raise KeyError(f"unknown service type {type_}/{flavor} (known: {known})") from None


def service_types() -> list[ServiceType]:
    """All registered types."""
    return list(_REGISTRY.values())


for _flavor in FLAVORS:
    register_service_type(
        ServiceType(
            type="managed-service",
            flavor=_flavor.name,
            name=_flavor.name,
            description=_flavor.description,
        )
    )
