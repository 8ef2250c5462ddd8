"""The operator under test: the real `steward run` process against the real apiserver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import containers
from tests.support.kubectl import Runner, install_crds, tool_runner
from tests.support.operator import Operator
from tests.support.paths import MS_CRD_FILE, POLICY_CRD_FILE
from tests.support.ports import free_port
from tests.support.tenants import Tenants, sandboxed_tenants


@pytest.fixture(scope="session")
def docker_images() -> containers.Images:
    """The Docker engine and locally built test images (shared with the container suite)."""
    return containers.docker_images()


@pytest.fixture(scope="session")
def crd_installed(control_plane: Any) -> None:
    install_crds(tool_runner("kubectl", control_plane), MS_CRD_FILE)


@pytest.fixture
def policy_crd_installed(control_plane: Any) -> None:
    """The StewardPolicy CRD, applied (again) for each test that enforces policies."""
    install_crds(tool_runner("kubectl", control_plane), POLICY_CRD_FILE)


@pytest.fixture
def operator(
    control_plane: Any,
    crd_installed: None,
    namespace: str,
    tmp_path: Path,
    kubectl: Runner,
) -> Iterator[Operator]:
    port = free_port()
    op = Operator(
        control_plane,
        namespace,
        tmp_path / "operator-state",
        tmp_path / "operator.log",
        metrics_port=port,
    )
    op.start()
    yield op
    try:
        # Let the finalizers stop what the tests started, then stop the operator.
        op.finish(kubectl)
    finally:
        print(op.logs()[-4000:])


@pytest.fixture
def sandboxed(
    control_plane: Any, crd_installed: None, kubectl: Runner, namespace: str, tmp_path: Path
) -> Iterator[Tenants]:
    """Tenant A (the test's namespace) and a second one, B, served by one
    `steward run --sandbox` (see ``sandboxed_tenants``)."""
    with sandboxed_tenants(control_plane, kubectl, namespace, tmp_path / "operator.log") as t:
        yield t
