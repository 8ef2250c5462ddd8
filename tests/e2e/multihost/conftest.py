"""Several Steward hosts on one machine: network namespaces around one real apiserver.

``netlab_cluster`` (module): a :class:`tests.support.multihost.MultiHost`, that is a
:class:`tests.support.netns.NetLab` with the hosts ``a``, ``b`` and ``c`` (a network
namespace each, on a bridge made for the module), and a control plane (etcd +
kube-apiserver, ``hack/testenv/controlplane.py``) whose apiserver listens only on the
bridge's address, so every namespace reaches it there;
etcd stays on the root namespace's 127.0.0.1, which no namespace reaches. Its admin
kubeconfig names ``https://<bridge address>:<port>`` and works from the root
namespace and from inside each host alike. The StewardNode and ManagedService CRDs
are installed.

Binaries: ``$STEWARD_TESTBIN`` when set, else ``hack/testenv/build-testbin.sh``
(cached; a cold build takes minutes, so the first test here is exempt from the
per-test timeout then). No root, no ``ip`` or no control plane: the tests skip
with the reason, except under CI (``CI=true``) where that is a failure.

At teardown the control plane is stopped and the lab removed; anything left (a
process of the control plane, a process inside a namespace, a namespace, a veth,
the bridge) fails the module's last test loudly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hack.testenv import controlplane

from tests.support.env import unavailable
from tests.support.kubectl import install_crds, tool_runner
from tests.support.multihost import MultiHost
from tests.support.netns import NetLab, NetLabError, missing_prerequisites
from tests.support.paths import MS_CRD_FILE, NODE_CRD_FILE
from tests.support.processes import alive

HOSTS = ("a", "b", "c")
BUILD_TIMEOUT = 3600  # a cold build of the testbin on 2 cores takes ~6 min


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The first test that starts the control plane may trigger a cold build.
    if os.environ.get("STEWARD_TESTBIN"):
        return
    for item in items:
        if "netlab_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))
            return


def _bin_dir() -> Path:
    testbin = os.environ.get("STEWARD_TESTBIN", "").strip()
    if testbin:
        controlplane.check_bin_dir(Path(testbin))
        return Path(testbin)
    return controlplane.build_testbin()


@pytest.fixture(scope="module")
def netlab_cluster() -> Iterator[MultiHost]:
    missing = missing_prerequisites()
    if missing:
        unavailable("network namespaces unavailable: needs " + ", ".join(missing))
    lab = NetLab(HOSTS)
    cp: controlplane.ControlPlane | None = None
    try:
        try:
            lab.start()
        except NetLabError as exc:
            unavailable(f"cannot make the hosts' network namespaces: {exc}")
        try:
            cp = controlplane.ControlPlane(
                _bin_dir(),
                bind_address=lab.bridge_address,
                extra_sans=[f"IP:{lab.bridge_address}"],
            )
            info = cp.start()
        except controlplane.ControlPlaneError as exc:
            unavailable(f"Kubernetes control plane unavailable: {exc}")
            raise  # unreachable: unavailable always raises
        kubectl = tool_runner("kubectl", info)
        install_crds(kubectl, NODE_CRD_FILE, MS_CRD_FILE)
        yield MultiHost(lab=lab, control_plane=info, kubectl=kubectl)
    finally:
        _teardown(lab, cp)


def _teardown(lab: NetLab, cp: controlplane.ControlPlane | None) -> None:
    problems = []
    inside = {h: left for h in lab.hosts if (left := lab.pids(h))}
    if inside:  # the tests stop what they start; the lab stops nothing
        problems.append(f"processes left inside the hosts' namespaces: {inside}")
    if cp is not None:
        started = cp.pids
        cp.stop()
        running = {name: pid for name, pid in started.items() if alive(pid)}
        if running:
            problems.append(f"control plane processes still alive: {running}")
    try:
        lab.close()
    except NetLabError as exc:
        problems.append(str(exc))
    if problems:
        pytest.fail("multihost teardown: " + "; ".join(problems), pytrace=False)
