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

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
TESTENV_DIR = REPO_ROOT / "hack" / "testenv"
FIXTURES = E2E_DIR / "fixtures"

if str(TESTENV_DIR) not in sys.path:
    sys.path.insert(0, str(TESTENV_DIR))

import controlplane  # noqa: E402  (hack/testenv, not part of the package)

DEFAULT_TIMEOUT = 60.0
BUILD_TIMEOUT = 3600  # seconds; a cold build of the testbin on 2 cores takes ~6 min

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


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


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _unavailable(reason: str) -> None:
    """No control plane: a failure under CI, a skip elsewhere."""
    message = f"Kubernetes control plane unavailable: {reason}"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


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
        _unavailable(str(exc))
        raise  # unreachable: _unavailable always raises
    try:
        yield info
    finally:
        cp.stop()


def _runner(tool: str, info: controlplane.ControlPlaneInfo) -> Runner:
    binary = str(info.bin_dir / tool)
    env = info.env()

    def run(
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [binary, *map(str, args)]
        try:
            proc = subprocess.run(
                argv,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**env, **(extra_env or {})},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            pytest.fail(f"{tool} timed out after {timeout}s: {list(argv)}\n{stderr}")
        if check and proc.returncode != 0:
            pytest.fail(
                f"{tool} exited with {proc.returncode}: {list(argv)}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    return run


@pytest.fixture
def kubectl(control_plane: controlplane.ControlPlaneInfo) -> Runner:
    """``kubectl(*args, input=None, check=True, timeout=60)`` as cluster admin."""
    return _runner("kubectl", control_plane)


@pytest.fixture
def helm(control_plane: controlplane.ControlPlaneInfo) -> Runner:
    """``helm(*args, input=None, check=True, timeout=60)`` as cluster admin."""
    return _runner("helm", control_plane)


def _namespace_name(node_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Runner) -> Iterator[str]:
    """A fresh namespace for one test; emptied and deleted afterwards.

    There is no kube-controller-manager, so nothing would empty a deleted
    namespace: the teardown deletes every namespaced object in it itself, then
    deletes the namespace and finalizes it (what the namespace controller
    does). Objects held by their own finalizers stay, as on a real cluster.
    """
    name = _namespace_name(request.node.name)
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        resources = kubectl(
            "api-resources",
            "--namespaced=true",
            "--verbs=list,delete",
            "-o",
            "name",
            check=False,
        ).stdout.split()
        if resources:
            kubectl(
                "delete",
                ",".join(resources),
                "--all",
                "-n",
                name,
                "--wait=false",
                "--ignore-not-found",
                check=False,
            )
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        finalize = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "spec": {"finalizers": []},
            }
        )
        kubectl(
            "replace",
            "--raw",
            f"/api/v1/namespaces/{name}/finalize",
            "-f",
            "-",
            input=finalize,
            check=False,
        )
