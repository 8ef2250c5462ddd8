"""Fixtures for tests that need pods to run: a real single-node cluster.

``node_cluster`` (session) starts :class:`cluster.NodeCluster`
(hack/testenv/cluster.py): etcd, kube-apiserver, controller-manager,
scheduler, containerd, kubelet and kube-proxy, on a bridge made for it, with
the local test images (busybox, the Python base) and the operator image
imported into containerd. Binaries: ``$STEWARD_TESTBIN`` / ``$STEWARD_NODEBIN``
when set, else ``build-testbin.sh`` / ``build-node.sh`` (cached; a cold build
takes minutes). The operator image: ``$STEWARD_OPERATOR_IMAGE`` (an archive),
else ``hack/image/build-image.sh`` (cached by source hash).

When a part is missing or the cluster cannot start, the tests are skipped with
the reason, except under CI (``CI=true``), where that is a failure. At the end
of the session the cluster is stopped and the machine checked: anything left
over (processes, bridge, iptables chains, mounts, cgroups, sysctls) fails the
session loudly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent
REPO_ROOT = NODE_DIR.parents[2]
TESTENV_DIR = REPO_ROOT / "hack" / "testenv"
IMAGE_SCRIPT = REPO_ROOT / "hack" / "image" / "build-image.sh"
BUILD_TIMEOUT = 3600  # a cold build of the node binaries takes ~12 min on 2 cores

from hack.testenv import cluster, controlplane  # noqa: E402 - the harness, a package

from tests.support.env import unavailable  # noqa: E402
from tests.support.kubectl import Runner, runner  # noqa: E402
from tests.support.node import NodeSession  # noqa: E402

_SESSION: dict[str, NodeSession] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node_teardown: stops the session's node cluster; runs after the others"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The teardown check stops the shared cluster: it must run last.
    last = [i for i in items if i.get_closest_marker("node_teardown")]
    if last:
        items[:] = [i for i in items if i not in last] + last
    # The first test that starts the cluster may trigger cold builds.
    for item in items:
        if {"node_cluster", "node_session"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))
            break


def _operator_image() -> tuple[Path | None, str]:
    env = os.environ.get("STEWARD_OPERATOR_IMAGE", "").strip()
    if env:
        path = Path(env)
        return (path, "") if path.is_file() else (None, f"$STEWARD_OPERATOR_IMAGE={env} missing")
    proc = subprocess.run(
        ["bash", str(IMAGE_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT
    )
    if proc.returncode != 0:
        return None, f"{IMAGE_SCRIPT} failed:\n{proc.stderr[-2000:]}"
    return Path(proc.stdout.strip().splitlines()[-1]), ""


@pytest.fixture(scope="session")
def node_session() -> Iterator[NodeSession]:
    try:
        if os.geteuid() != 0:
            unavailable("a kubelet node needs root")
        if cluster.missing_host_tools():
            cluster.ensure_packages()
        testbin = os.environ.get("STEWARD_TESTBIN", "").strip()
        bin_dir = Path(testbin) if testbin else controlplane.build_testbin()
        controlplane.check_bin_dir(bin_dir)
        nodebin = os.environ.get("STEWARD_NODEBIN", "").strip()
        node_bin = Path(nodebin) if nodebin else cluster.build_nodebin()
        cluster.check_node_bin_dir(node_bin)
        images = cluster.local_test_images()
        if not any(i.tag.startswith("steward-test/busybox:") for i in images):
            unavailable("no busybox rootfs cached: run hack/docker/build-test-images.sh")
        archive, op_error = _operator_image()
        op_tag = None
        if archive is not None:
            op_tag = Path(f"{archive}.tag").read_text().strip()
            images.append(cluster.ImageSpec(op_tag, archive=archive))
        nc = cluster.NodeCluster(bin_dir, node_bin, images=images)
        info = nc.start()
    except controlplane.ControlPlaneError as exc:
        unavailable(f"node cluster unavailable: {exc}")
        raise  # unreachable
    session = NodeSession(nc, info, info.images.get(op_tag) if op_tag else None, archive, op_error)
    print(f"\nnode cluster up in {info.startup_seconds}s {dict(info.timings)}", file=sys.stderr)
    _SESSION["s"] = session
    try:
        yield session
    finally:
        _SESSION.pop("s", None)
        report = nc.stop() if nc.info is not None else nc.last_report
        if report is not None and (report.leftovers or report.errors):
            pytest.fail(
                "node cluster teardown left the machine dirty:\n  "
                + "\n  ".join(report.errors + report.leftovers),
                pytrace=False,
            )


@pytest.fixture(scope="session")
def node_cluster(node_session: NodeSession) -> cluster.NodeClusterInfo:
    return node_session.info


@pytest.fixture
def node_kubectl(node_cluster: cluster.NodeClusterInfo) -> Runner:
    """``node_kubectl(*args, input=None, check=True, timeout=60)`` as cluster admin."""
    return runner(node_cluster.control_plane.bin_dir / "kubectl", node_cluster.env())


@pytest.fixture
def node_namespace(request: pytest.FixtureRequest, node_kubectl: Runner) -> Iterator[str]:
    """A fresh namespace; deleted afterwards (the namespace controller empties it)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:30].strip("-")
    name = f"node-{slug}-{uuid.uuid4().hex[:6]}"
    node_kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        node_kubectl(
            "delete", "pods", "--all", "-n", name, "--grace-period=1", "--wait=false", check=False
        )
        node_kubectl("delete", "namespace", name, "--wait=false", check=False)
