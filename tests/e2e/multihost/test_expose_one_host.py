"""`steward run --host-ip` on one host: exposed services are published on the host's address.

The "host" is the lab's root namespace (its bridge address); the client is one of the lab's
namespaces, which reaches nothing but the bridge. A container (``-p HOSTIP:port``, published by
the Docker engine) and a daemon (``$(HOST_IP)``) are exposed; each is reached from the client at
the address its EndpointSlice gives, its status names its Service, and both objects go when it
is deleted. Without ``--host-ip`` nothing claims to be reachable: the loopback, no address in
the slice (checked by the unit table, ``tests/unit/test_exposure.py``).
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import kubernetes
import pytest

from tests.support import containers
from tests.support.hosts import condition
from tests.support.kubectl import Runner
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.multihost import MultiHost
from tests.support.namespaces import fresh_namespace
from tests.support.netns import NetLab
from tests.support.operator import read_log, start_steward
from tests.support.waits import wait_for

GROUP, VERSION, PLURAL = "steward.dev", "v1alpha1", "managedservices"
STARTED = "Activity 'startup' succeeded"


@dataclass
class OneHost:
    lab: NetLab
    kubectl: Runner
    namespace: str
    core: Any
    discovery: Any
    custom: Any
    log: Path

    def ready(self, name: str) -> dict[str, Any] | None:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    def slice_addresses(self, name: str) -> set[str] | None:
        try:
            sl = self.discovery.read_namespaced_endpoint_slice(f"{name}-steward", self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {
            a
            for ep in sl.endpoints or ()
            if ep.conditions is not None and ep.conditions.ready
            for a in ep.addresses
        }

    def service(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_service(name, self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


@pytest.fixture(scope="module")
def one_host(
    netlab_cluster: MultiHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OneHost]:
    containers.docker_images()  # the engine and the test images, before the operator starts
    mh = netlab_cluster
    tmp = tmp_path_factory.mktemp("expose-one-host")
    api = kubernetes.config.new_client_from_config(config_file=str(mh.kubeconfig))  # type: ignore[no-untyped-call]
    with fresh_namespace(mh.kubectl, f"expose-{uuid.uuid4().hex[:6]}") as ns:
        log = tmp / "operator.log"
        argv = ["--state-dir", str(tmp / "state"), "run", "-n", ns]
        proc = start_steward(
            [*argv, "--host-ip", mh.lab.bridge_address], mh.control_plane.env(), log
        )
        try:
            wait_for(lambda: STARTED in read_log(log) or proc.poll() is not None, timeout=60,
                     what="steward run serving")  # fmt: skip
            assert proc.poll() is None, read_log(log)
            yield OneHost(
                mh.lab, mh.kubectl, ns, kubernetes.client.CoreV1Api(api),
                kubernetes.client.DiscoveryV1Api(api), kubernetes.client.CustomObjectsApi(api), log,
            )  # fmt: skip
            mh.kubectl("delete", "msvc", "--all", "-n", ns, "--wait=true", "--timeout=60s",
                       timeout=90, check=False)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            print(read_log(log)[-4000:])


def _container(image: str, port: int) -> dict[str, Any]:
    return {
        "container": {
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "containerPort": 8080,
        },
        "endpoint": {
            "protocol": "http",
            "port": port,
            "expose": "Cluster",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


def _daemon(port: int) -> dict[str, Any]:
    spec = http_daemon_spec()
    spec["daemon"]["command"][spec["daemon"]["command"].index("127.0.0.1")] = "$(HOST_IP)"
    spec["endpoint"].update({"port": port, "expose": "Cluster"})
    return spec


@pytest.mark.parametrize("flavor", ["container", "daemon"])
def test_an_exposed_service_is_published_on_the_host_address(
    one_host: OneHost, flavor: str
) -> None:
    h = one_host
    name, port = f"web-{flavor}", 8080
    spec = (
        _container(containers.docker_images().busybox, port)
        if flavor == "container"
        else _daemon(port)
    )
    h.custom.create_namespaced_custom_object(GROUP, VERSION, h.namespace, PLURAL, msvc(name, spec))
    try:
        obj = wait_for(lambda: h.ready(name), timeout=60, what=f"{name} Ready")
    except AssertionError:
        print(h.kubectl("get", "msvc", name, "-n", h.namespace, "-o", "yaml").stdout)
        raise
    ep, address = obj["status"]["endpoint"], h.lab.bridge_address
    assert ep["host"] == address and ep["uri"] == f"http://{name}.{h.namespace}.svc:{port}", ep
    assert ep["hostUri"] == f"http://{address}:{ep['port']}", ep
    wait_for(lambda: h.slice_addresses(name) == {address}, timeout=10,
             what=f"the slice of {name} ready at {address}")  # fmt: skip
    svc = h.service(name)
    assert svc.spec.selector is None and [p.port for p in svc.spec.ports] == [port]
    assert h.lab.probe("a", address, ep["port"]) == "connected"
    if flavor == "container":
        client = docker.from_env()
        try:
            (found,) = client.containers.list(
                filters={"label": f"steward.dev/service={h.namespace}/{name}"}
            )
            published = found.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
        finally:
            client.close()
        assert published == [{"HostIp": address, "HostPort": str(ep["port"])}], published

    h.kubectl("delete", "msvc", name, "-n", h.namespace, "--wait=true", "--timeout=60s")
    wait_for(lambda: h.service(name) is None and h.slice_addresses(name) is None, timeout=15,
             what=f"the Service and the slice of {name} deleted with it")  # fmt: skip
