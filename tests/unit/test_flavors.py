"""The flavor catalog and the runtimes' declared capabilities agree with what exists."""

from __future__ import annotations

import dataclasses

import pytest

from steward.api.flavors import FLAVORS, NAMES, by_name, one_of
from steward.api.spec import ManagedServiceSpec
from steward.api.types import get_service_type
from steward.runtimes.base import Capabilities, Runtime
from steward.runtimes.registry import runtime_class


def test_catalog_names_the_spec_fields_and_models() -> None:
    assert NAMES == ("daemon", "container", "terraform")
    for f in FLAVORS:
        assert ManagedServiceSpec.model_fields[f.field].annotation == (f.model | None)
        assert get_service_type("managed-service", f.name).description == f.description
    assert one_of() == "daemon, container or terraform"
    with pytest.raises(KeyError, match="known: daemon, container, terraform"):
        by_name("podman")


@pytest.mark.parametrize("name", NAMES)
def test_every_flavor_has_a_runtime_declaring_capabilities(name: str) -> None:
    cls = runtime_class(name)
    assert issubclass(cls, Runtime)
    assert cls.flavor == name
    assert cls.__module__.startswith(f"steward.runtimes.{name}.")
    assert "capabilities" in vars(cls)  # declared by the class, not inherited
    assert isinstance(cls.capabilities, Capabilities)


def test_capabilities_per_flavor() -> None:
    caps = {name: dataclasses.asdict(runtime_class(name).capabilities) for name in NAMES}
    assert (
        caps["daemon"] == caps["container"] == dataclasses.asdict(Capabilities(allocates_port=True))
    )
    assert caps["terraform"] == dataclasses.asdict(
        Capabilities(updates_in_place=True, endpoint_from_outputs=True, has_outputs=True)
    )
    for name in NAMES:  # the older spelling the engine reads keeps working
        cls = runtime_class(name)
        bare = cls.__new__(cls)  # the property reads the class's declaration only
        assert bare.updates_in_place is cls.capabilities.updates_in_place
