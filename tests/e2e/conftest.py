"""End-to-end test plumbing: a real Kubernetes control plane (etcd + kube-apiserver).

The binaries come from $STEWARD_TESTBIN when set, else from
``hack/testenv/build-testbin.sh`` (build or reuse; a cold build takes a while).
When the control plane cannot be built or started, tests are skipped with the
reason, except under CI (``CI=true``) where that is a failure.

Every test collected under tests/e2e is marked ``e2e``.

Fixtures:

* ``control_plane`` (session): :class:`controlplane.ControlPlaneInfo`
  (``kubeconfig``, ``server``, ``bin_dir``, ``env()`` ...).
* ``kubectl`` / ``helm``: run the tool with the admin kubeconfig, as an argv
  list, with a timeout; returns ``subprocess.CompletedProcess`` (text).
  ``check=True`` (default) fails the test with the tool's output on a
  non-zero exit.
* ``namespace``: a fresh namespace per test, emptied and deleted afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hack.testenv import controlplane

from tests.support.chart import KOPF_CRDS, MS_CRD, POLICY_CRD
from tests.support.env import unavailable
from tests.support.kubectl import Runner, install_crds, tool_runner
from tests.support.namespaces import fresh_namespace, namespace_name
from tests.support.paths import CRDS

E2E_DIR = Path(__file__).resolve().parent

BUILD_TIMEOUT = 3600  # seconds; a cold build of the testbin on 2 cores takes ~6 min


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test against a real etcd + kube-apiserver "
        "(built by hack/testenv/build-testbin.sh or taken from $STEWARD_TESTBIN)",
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection looks at the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Without $STEWARD_TESTBIN the first selected test that uses the control
    # plane may trigger a cold build (minutes): exempt that one test from the
    # suite's per-test pytest-timeout.
    if os.environ.get("STEWARD_TESTBIN") or not session.config.pluginmanager.hasplugin("timeout"):
        return
    for item in session.items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))
            return


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlaneInfo]:
    testbin = os.environ.get("STEWARD_TESTBIN", "").strip()
    try:
        if testbin:
            bin_dir = Path(testbin)
            controlplane.check_bin_dir(bin_dir)
        else:
            bin_dir = controlplane.build_testbin()
        cp = controlplane.ControlPlane(bin_dir)
        info = cp.start()
    except controlplane.ControlPlaneError as exc:
        unavailable(f"Kubernetes control plane unavailable: {exc}")
        raise  # unreachable: unavailable always raises
    try:
        yield info
    finally:
        cp.stop()


@pytest.fixture
def kubectl(control_plane: controlplane.ControlPlaneInfo) -> Runner:
    """``kubectl(*args, input=None, check=True, timeout=60)`` as cluster admin."""
    return tool_runner("kubectl", control_plane)


@pytest.fixture
def helm(control_plane: controlplane.ControlPlaneInfo) -> Runner:
    """``helm(*args, input=None, check=True, timeout=60)`` as cluster admin."""
    return tool_runner("helm", control_plane)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Runner) -> Iterator[str]:
    """A fresh namespace for one test; emptied and deleted afterwards.

    There is no kube-controller-manager, so nothing would empty a deleted
    namespace: the teardown deletes every namespaced object in it itself, then
    deletes the namespace and finalizes it (what the namespace controller
    does). Objects held by their own finalizers stay, as on a real cluster.
    """
    with fresh_namespace(kubectl, namespace_name(request.node.name)) as name:
        yield name


@pytest.fixture(scope="module")
def chart_crds(control_plane: controlplane.ControlPlaneInfo) -> Iterator[None]:
    """The CRDs around a module's `helm install`s (test_chart.py, test_rbac.py).

    Before: the ManagedService CRD is server-side applied exactly as the operator
    suites' ``crd_installed`` does, so Helm finds it present and skips it. (Had
    Helm created it, the later server-side apply would conflict with the "helm"
    field manager on .spec.versions.) It stays: those suites share it.

    After: the kopf peering CRDs that this module's installs created are deleted
    (Helm never deletes CRDs).
    """
    kubectl = tool_runner("kubectl", control_plane)

    def kopf_present() -> set[str]:
        names = kubectl("get", "crd", "-o", "name", timeout=90).stdout.split()
        return {n.split("/", 1)[1] for n in names} & set(KOPF_CRDS)

    install_crds(kubectl, *(CRDS / f"{crd}.yaml" for crd in (MS_CRD, POLICY_CRD)))
    before = kopf_present()
    yield
    created = kopf_present() - before
    if created:
        kubectl(
            "delete",
            "crd",
            *sorted(created),
            "--wait=true",
            "--timeout=60s",
            timeout=90,
            check=False,
        )
