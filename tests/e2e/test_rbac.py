"""The chart's RBAC is enough for the operator, and no more: proven with the operator's own identity.

A namespaced-mode release (watching namespace A only) is `helm install`ed; a
token for its ServiceAccount is minted through the TokenRequest API (`kubectl
create token`), and the REAL operator process runs with a kubeconfig holding
nothing but that token, with the args and env of the chart's own Deployment.
A ManagedService then goes through its whole lifecycle (apply, Ready, update,
delete through the finalizer) while the operator's log must show no 403 and no
kopf "not enough permissions" fallback. The same identity is then refused what
the operator must never need: Secrets outside A, namespaces, CRDs, pods, RBAC.

A flavor is a parameter (``FLAVORS``): the container and Terraform flavors are
added there with their own spec, chart values and checks when those runtimes
land in the operator.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from tests.support.chart import CHART, MS_CRD, container
from tests.support.data import terraform
from tests.support.hosts import pid_of
from tests.support.kubectl import Runner, apply, delete_all_msvc, get, wait_ready
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.namespaces import scratch_namespace
from tests.support.operator import read_log, start_steward
from tests.support.ports import free_port
from tests.support.processes import alive, stop_process
from tests.support.waits import wait_for

RELEASE = "rbac"
SERVICE_ACCOUNT = "rbac-steward"


# Log text that means the operator hit RBAC: a 403, or kopf falling back after one.
PERMISSION_PROBLEM = re.compile(
    r"forbidden|not enough permissions|(?<![\d:.])403(?![\d:.])", re.IGNORECASE
)


# ---------------------------------------------------------------- flavors
@dataclass(frozen=True)
class Ctx:
    """What a flavor's callables get: admin kubectl, namespace A, a scratch directory."""

    kubectl: Runner
    namespace: str
    workdir: Path


@dataclass(frozen=True)
class Flavor:
    """One kind of ManagedService driven through its lifecycle by the restricted operator."""

    id: str
    chart_values: tuple[str, ...]
    """`--set` values the flavor needs (least privilege: only what it uses)."""
    prepare: Callable[[Ctx], None]
    """Create, as admin, what the spec references (Secrets, ConfigMaps...) in namespace A."""
    spec: Callable[[Ctx], dict[str, Any]]
    updated_spec: Callable[[Ctx], dict[str, Any]]
    check_ready: Callable[[Ctx, dict[str, Any], int], None]
    """Assertions on a Ready object (the int is the generation it must reflect)."""
    check_deleted: Callable[[Ctx, dict[str, Any]], None]
    """Assertions once the object is gone, given its last Ready state."""
    denied_extra: tuple[tuple[str, ...], ...] = field(default=())
    """More `kubectl auth can-i` argv (in namespace A) that must be `no` for this flavor."""
    ready_timeout: int = 120


def _names(ctx: Ctx, kind: str) -> set[str]:
    out = ctx.kubectl("get", kind, "-n", ctx.namespace, "-o", "name").stdout.split()
    return {n.split("/", 1)[1] for n in out}


# -- daemon: env valueFrom a Secret and a ConfigMap (get), status, events, finalizer
TOKEN_VALUE = "rbac-e2e-token-value-123"
GREETING = "hello-from-a-configmap"


def _token_secret(ctx: Ctx) -> None:
    """The Secret ``tok`` (key ``token``) the flavors' specs read."""
    ctx.kubectl(
        "create",
        "secret",
        "generic",
        "tok",
        "-n",
        ctx.namespace,
        f"--from-literal=token={TOKEN_VALUE}",
    )


def _daemon_prepare(ctx: Ctx) -> None:
    _token_secret(ctx)
    ctx.kubectl(
        "create", "configmap", "cfg", "-n", ctx.namespace, f"--from-literal=greeting={GREETING}"
    )


def _daemon_spec(extra_kwargs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "daemon": {
            "python": {
                "callable": "steward.examples_app:serve",
                "kwargs": {"port": "$(PORT)", "require_env": "TOKEN", **(extra_kwargs or {})},
            },
            # env valueFrom: the operator must `get` this Secret and ConfigMap
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                },
            ],
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/healthz"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


def _daemon_check_ready(ctx: Ctx, obj: dict[str, Any], generation: int) -> None:
    st = obj["status"]
    assert st["state"] == "active" and st["observedGeneration"] == generation
    environ = psutil.Process(pid_of(obj)).environ()
    assert environ["TOKEN"] == TOKEN_VALUE and environ["GREETING"] == GREETING
    assert requests.get(st["endpoint"]["uri"] + "/healthz", timeout=5).status_code == 200


def _daemon_check_deleted(ctx: Ctx, last: dict[str, Any]) -> None:
    pid = pid_of(last)
    wait_for(lambda: not alive(pid), timeout=20)


DAEMON = Flavor(
    id="daemon",
    # The daemon flavor writes no Secrets: prove it runs without those verbs.
    chart_values=("terraform.secretsWrite=false",),
    prepare=_daemon_prepare,
    spec=lambda ctx: _daemon_spec(),
    updated_spec=lambda ctx: _daemon_spec({"greeting": "updated"}),
    check_ready=_daemon_check_ready,
    check_deleted=_daemon_check_deleted,
    denied_extra=(
        ("list", "secrets"),
        ("create", "secrets"),
        ("update", "secrets"),
        ("delete", "secrets"),
        ("create", "leases.coordination.k8s.io"),
    ),
)

# -- terraform: varsFrom a Secret (get), Terraform's kubernetes backend running with the
# operator's credentials (state Secret: list/get/create/update/delete; lock Lease:
# get/create/update/delete) and the outputs Secret the operator writes (create/update).
TF_MODULE = terraform("marker.tf", "service_outputs.tf")  # tests/data/terraform


def _tf_prepare(ctx: Ctx) -> None:
    ctx.kubectl(
        "create", "secret", "generic", "tf-input", "-n", ctx.namespace, "--from-literal=word=w0rd"
    )


def _tf_spec(ctx: Ctx, name: str) -> dict[str, Any]:
    return {
        "terraform": {
            "module": {"inline": {"main.tf": TF_MODULE}},
            "vars": {"name": name, "marker": str(ctx.workdir / "tf-created")},
            "varsFrom": [
                {"secretRef": {"name": "tf-input"}, "key": "word", "varName": "secret_word"}
            ],
            "endpointOutput": "url",
            "backend": {"kubernetes": {}},
            "writeOutputsToSecret": {"name": "tf-out"},
        }
    }


def _tf_check_ready(ctx: Ctx, obj: dict[str, Any], generation: int) -> None:
    name = obj["spec"]["terraform"]["vars"]["name"]
    wait_for(
        lambda: (
            (o := get(ctx.kubectl, ctx.namespace, obj["metadata"]["name"]))["status"][
                "endpoint"
            ].get("uri")
            == f"http://127.0.0.1:9/{name}"
            and o["status"]["observedGeneration"] == generation
        ),
        timeout=120,
    )
    assert (ctx.workdir / "tf-created").exists()
    secrets = _names(ctx, "secrets")
    assert any(n.startswith("tfstate-default-") for n in secrets), secrets
    assert any(n.startswith("lock-tfstate-default-") for n in _names(ctx, "leases"))
    out = json.loads(
        ctx.kubectl("get", "secret", "tf-out", "-n", ctx.namespace, "-o", "json").stdout
    )
    wait_for(
        lambda: (
            base64.b64decode(
                json.loads(
                    ctx.kubectl("get", "secret", "tf-out", "-n", ctx.namespace, "-o", "json").stdout
                )["data"]["url"]
            ).decode()
            == f"http://127.0.0.1:9/{name}"
        ),
        timeout=60,
    )
    assert base64.b64decode(out["data"]["token"]).decode() == "w0rd"


def _tf_check_deleted(ctx: Ctx, last: dict[str, Any]) -> None:
    assert not (ctx.workdir / "tf-created").exists(), "destroy must run on delete"
    assert not any(n.startswith("tfstate-") for n in _names(ctx, "secrets"))
    assert not any(n.startswith("lock-tfstate-") for n in _names(ctx, "leases"))


TERRAFORM = Flavor(
    id="terraform",
    chart_values=(
        "terraform.secretsWrite=true",
        "terraform.stateBackend=kubernetes",
        # the admin allows what this flavor's test uses (denied by the default policy)
        "policy.default.spec.terraform.allowOutputsSecret=true",
    ),
    prepare=_tf_prepare,
    spec=lambda ctx: _tf_spec(ctx, "alpha"),
    updated_spec=lambda ctx: _tf_spec(ctx, "beta"),
    check_ready=_tf_check_ready,
    check_deleted=_tf_check_deleted,
    ready_timeout=240,
)


# -- container: the operator talks to the local Docker engine (no Kubernetes verbs of its
# own beyond status/events/finalizer), env from a Secret (get).
def _busybox_image() -> str:
    from tests.support.containers import images_built, run_docker_script

    res = run_docker_script("build-test-images.sh", 900)
    assert res is not None and res.returncode == 0, "test images could not be built"
    return images_built(res).busybox


def _container_prepare(ctx: Ctx) -> None:
    _token_secret(ctx)


def _container_spec(flag: str) -> dict[str, Any]:
    return {
        "container": {
            "image": _busybox_image(),
            "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www", flag],
            "containerPort": 8080,
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}}
            ],
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


def _containers(name: str, namespace: str) -> list[Any]:
    import docker

    client = docker.from_env()
    try:
        found: list[Any] = client.containers.list(
            all=True, filters={"label": f"steward.dev/service={namespace}/{name}"}
        )
        return found
    finally:
        client.close()


def _container_check_ready(ctx: Ctx, obj: dict[str, Any], generation: int) -> None:
    st = obj["status"]
    assert st["state"] == "active" and st["observedGeneration"] == generation
    (c,) = _containers(obj["metadata"]["name"], ctx.namespace)
    assert "TOKEN=" + TOKEN_VALUE in c.attrs["Config"]["Env"]
    assert requests.get(st["endpoint"]["uri"], timeout=5).status_code == 200


def _container_check_deleted(ctx: Ctx, last: dict[str, Any]) -> None:
    wait_for(lambda: not _containers(last["metadata"]["name"], ctx.namespace), timeout=30)


CONTAINER = Flavor(
    id="container",
    chart_values=("terraform.secretsWrite=false",),
    prepare=_container_prepare,
    spec=lambda ctx: _container_spec("-v"),
    updated_spec=lambda ctx: _container_spec("-vv"),
    check_ready=_container_check_ready,
    check_deleted=_container_check_deleted,
    denied_extra=(("list", "secrets"), ("create", "secrets")),
)

FLAVORS = [
    pytest.param(DAEMON, id=DAEMON.id),
    pytest.param(CONTAINER, id=CONTAINER.id, marks=pytest.mark.docker),
    pytest.param(TERRAFORM, id=TERRAFORM.id, marks=pytest.mark.terraform),
]


# ---------------------------------------------------------------- the release and its identity
@dataclass
class Release:
    system: str
    """The release's namespace, where the ServiceAccount lives (not watched)."""
    watched: str
    """Namespace A: the only one the release watches."""
    outside: str
    """Namespace B: neither watched nor the release's."""
    kubeconfig: Path
    """Holds only the ServiceAccount's token (and the CA)."""
    deployment: dict[str, Any]
    """The Deployment as installed."""


def _write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, namespace: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {"server": server, "certificate-authority": str(ca_file)},
                    }
                ],
                "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {
                            "cluster": "e2e",
                            "user": SERVICE_ACCOUNT,
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)


def install_release(
    helm: Runner,
    kubectl: Runner,
    control_plane: Any,
    tmp_path: Path,
    watched: str,
    system: str,
    outside: str,
    values: tuple[str, ...],
    state_dir: Path,
    liveness_port: int,
    metrics_port: int,
) -> Release:
    sets = [
        f"watchNamespaces={{{watched}}}",
        f"operator.stateDir={state_dir}",
        f"liveness.port={liveness_port}",
        f"metrics.port={metrics_port}",
        # The operator runs here on the host, whose Python (under /root) a sandbox uid
        # cannot execute; the sandbox needs no RBAC and is proven in the image by
        # tests/e2e/node/test_helm_tenancy.py. --enforce-policy (and its RBAC) stays on.
        "tenancy.sandbox.enabled=false",
        *values,
    ]
    helm(
        "install",
        RELEASE,
        CHART,
        "--namespace",
        system,
        *(a for s in sets for a in ("--set", s)),
        timeout=120,
    )
    kubectl("wait", "--for=condition=Established", f"crd/{MS_CRD}", "--timeout=60s")
    # Established is not yet servable: wait until listing answers (no 429 "storage is
    # (re)initializing" for the operator's first list).
    wait_for(lambda: kubectl("get", "msvc", "-n", watched, check=False).returncode == 0, timeout=30)
    token = kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", system, "--duration=1h"
    ).stdout.strip()
    kubeconfig = tmp_path / "operator.kubeconfig"
    _write_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file, token, watched)
    deployment = json.loads(
        kubectl("get", "deploy", SERVICE_ACCOUNT, "-n", system, "-o", "json").stdout
    )
    return Release(system, watched, outside, kubeconfig, deployment)


@pytest.fixture
def release_factory(
    helm: Runner,
    kubectl: Runner,
    control_plane: Any,
    namespace: str,
    tmp_path: Path,
    chart_crds: None,
) -> Iterator[Callable[[tuple[str, ...]], Release]]:
    """Install the chart in its own namespace, watching ``namespace`` (A); B exists too."""
    with (
        scratch_namespace(kubectl, "e2e-rbac-system") as system,
        scratch_namespace(kubectl, "e2e-rbac-outside") as outside,
    ):
        installed: list[str] = []

        def make(values: tuple[str, ...]) -> Release:
            release = install_release(
                helm,
                kubectl,
                control_plane,
                tmp_path,
                namespace,
                system,
                outside,
                values,
                tmp_path / "operator-state",
                free_port(),
                free_port(),
            )
            installed.append(system)
            return release

        try:
            yield make
        finally:
            for ns in installed:
                helm("uninstall", RELEASE, "--namespace", ns, "--wait", check=False, timeout=120)


def as_operator(kubectl: Runner, release: Release, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with only the operator's token (the admin kubeconfig replaced)."""
    return kubectl(*args, check=False, extra_env={"KUBECONFIG": str(release.kubeconfig)})


def can_i(kubectl: Runner, release: Release, *args: str) -> bool:
    out = as_operator(kubectl, release, "auth", "can-i", *args).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


# ---------------------------------------------------------------- the operator process
@dataclass
class RestrictedOperator:
    proc: subprocess.Popen[bytes]
    log: Path
    liveness_url: str
    metrics_url: str

    def logs(self) -> str:
        return read_log(self.log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s: only this process, by its PID."""
        stop_process(self.proc)


def operator_env(deployment: dict[str, Any], kubeconfig: Path, pod_id: str) -> dict[str, str]:
    """This process's environment without any cluster credentials, plus the chart's env."""
    env = {
        k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")
    }
    for item in container(deployment).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] == "POD_ID":  # a fieldRef the kubelet would fill
            env["POD_ID"] = pod_id
    env["KUBECONFIG"] = str(kubeconfig)
    return env


def start_operator(
    release: Release,
    tmp_path: Path,
    pod_id: str = "steward-rbac-e2e-0",
    ports: tuple[int, int] | None = None,
) -> RestrictedOperator:
    """`steward <the Deployment's args> --kubeconfig <token-only kubeconfig>`.

    ``ports`` (liveness, metrics) replace the chart's for a second replica on
    this one host (pods would each have their own network namespace).
    """
    op = container(release.deployment)
    assert op["command"] == ["steward"]
    port = {p["name"]: p["containerPort"] for p in op["ports"]}
    args = list(op["args"])
    if ports is not None:
        port = {"healthz": ports[0], "metrics": ports[1]}
        args = [
            f"--liveness=http://0.0.0.0:{ports[0]}/healthz"
            if a.startswith("--liveness=")
            else f"--metrics-port={ports[1]}"
            if a.startswith("--metrics-port=")
            else a
            for a in args
        ]
    args.append(f"--kubeconfig={release.kubeconfig}")
    log = tmp_path / f"{pod_id}.log"
    proc = start_steward(args, operator_env(release.deployment, release.kubeconfig, pod_id), log)
    return RestrictedOperator(
        proc,
        log,
        f"http://127.0.0.1:{port['healthz']}/healthz",
        f"http://127.0.0.1:{port['metrics']}/metrics",
    )


def permission_problems(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if PERMISSION_PROBLEM.search(line)]


def assert_no_permission_problems(operator: RestrictedOperator, settle: float = 0.0) -> None:
    time.sleep(settle)
    problems = permission_problems(operator.logs())
    assert not problems, (
        f"the operator hit RBAC {len(problems)} time(s) with the chart's ServiceAccount "
        "(kopf's cluster scanning lists namespaces and CRDs unless "
        "settings.scanning.disabled is set):\n" + "\n".join(p[:400] for p in problems[:4])
    )


def serving(operator: RestrictedOperator) -> bool:
    """The operator exited, or its liveness endpoint answers."""
    if operator.proc.poll() is not None:
        return True
    try:
        return requests.get(operator.liveness_url, timeout=2).ok
    except requests.RequestException:
        return False


def json_log_records(logs: str) -> list[dict[str, Any]]:
    records = []
    for line in logs.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


# ---------------------------------------------------------------- the proof
@pytest.fixture
def release(flavor: Flavor, release_factory: Callable[[tuple[str, ...]], Release]) -> Release:
    """The chart installed with the values of the test's FLAVOR."""
    return release_factory(flavor.chart_values)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_operator_lifecycle_with_only_the_charts_service_account(
    flavor: Flavor, release: Release, kubectl: Runner, namespace: str, tmp_path: Path
) -> None:
    who = json.loads(as_operator(kubectl, release, "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{release.system}:{SERVICE_ACCOUNT}"
    )
    ctx = Ctx(kubectl, namespace, tmp_path)
    flavor.prepare(ctx)

    operator = start_operator(release, tmp_path)
    try:
        wait_for(lambda: serving(operator), timeout=30, step=0.5)
        assert operator.proc.poll() is None, f"operator exited:\n{operator.logs()}"
        assert_no_permission_problems(operator, settle=2.0)  # fail fast, with the reason

        # apply as admin -> Ready, written by the operator (status patch, finalizer patch, events)
        apply(kubectl, namespace, msvc("svc", flavor.spec(ctx)))
        obj = wait_ready(kubectl, namespace, "svc", timeout=flavor.ready_timeout)
        assert obj["metadata"]["finalizers"] == ["steward.dev/finalizer"]
        flavor.check_ready(ctx, obj, obj["metadata"]["generation"])
        events = json.loads(
            kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.name=svc",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert events, "the operator posted no Event"
        assert {e["source"].get("component") for e in events} == {"steward"}

        # update -> a new generation observed and Ready again
        apply(kubectl, namespace, msvc("svc", flavor.updated_spec(ctx)))
        generation = get(kubectl, namespace, "svc")["metadata"]["generation"]
        assert generation == obj["metadata"]["generation"] + 1
        wait_for(
            lambda: (
                (o := get(kubectl, namespace, "svc"))["status"].get("observedGeneration")
                == generation
                and o["status"].get("state") == "active"
            ),
            timeout=flavor.ready_timeout,
        )
        updated = wait_ready(kubectl, namespace, "svc", timeout=flavor.ready_timeout)
        flavor.check_ready(ctx, updated, generation)

        # probes and metrics served under the restricted identity too
        assert requests.get(operator.liveness_url, timeout=5).status_code == 200
        metrics = requests.get(operator.metrics_url, timeout=5).text
        assert "steward_reconciles_total" in metrics

        # delete while the operator runs: the finalizer stops the workload and is removed
        kubectl(
            "delete",
            "msvc",
            "svc",
            "-n",
            namespace,
            f"--timeout={flavor.ready_timeout}s",
            timeout=flavor.ready_timeout + 30,
        )
        flavor.check_deleted(ctx, updated)
        assert operator.proc.poll() is None, f"operator exited:\n{operator.logs()}"
    finally:
        # what the operator last wrote, for a failure's diagnosis
        print(kubectl("get", "msvc", "-n", namespace, "-o", "yaml", check=False).stdout[-4000:])
        # ManagedServices go while the operator still runs (their finalizers need it).
        delete_all_msvc(kubectl, namespace)
        operator.stop()
        print(operator.logs()[-6000:])

    assert_no_permission_problems(operator)
    records = json_log_records(operator.logs())
    assert records, "no JSON log lines (the chart sets --log-format=json)"
    # Any other error is a failure too, except kopf retrying a transient 429 (an apiserver
    # whose storage for a just-created CRD is still initializing).
    errors = [
        r
        for r in records
        if r["level"] in ("error", "critical") and "APITooManyRequestsError" not in r["message"]
    ]
    assert not errors, errors[:5]


def _denied_common(release: Release) -> list[tuple[str, ...]]:
    a, b, system = release.watched, release.outside, release.system
    return [
        # Secrets and ManagedServices outside the watched namespace
        ("get", "secrets", "-n", b),
        ("list", "secrets", "-n", b),
        ("get", "configmaps", "-n", b),
        ("list", "managedservices.steward.dev", "-n", b),
        ("patch", "managedservices.steward.dev", "--subresource=status", "-n", b),
        ("create", "events", "-n", b),
        ("patch", "services", "-n", b),
        ("patch", "endpointslices.discovery.k8s.io", "-n", b),
        ("get", "secrets", "-n", system),
        ("list", "secrets", "--all-namespaces"),
        # what the operator never does to its own resources
        ("create", "managedservices.steward.dev", "-n", a),
        ("update", "managedservices.steward.dev", "-n", a),
        ("delete", "managedservices.steward.dev", "-n", a),
        ("update", "managedservices.steward.dev", "--subresource=status", "-n", a),
        # namespaces, CRDs, workloads, RBAC, nodes, impersonation
        ("delete", f"namespaces/{b}"),
        ("create", "namespaces"),
        ("list", "namespaces"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("update", f"customresourcedefinitions.apiextensions.k8s.io/{MS_CRD}"),
        ("delete", f"customresourcedefinitions.apiextensions.k8s.io/{MS_CRD}"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "pods", "-n", a),
        ("create", "pods", "-n", b),
        ("create", "pods", "--subresource=exec", "-n", a),
        ("create", "deployments.apps", "-n", a),
        ("create", "roles.rbac.authorization.k8s.io", "-n", a),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", a),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("list", "nodes"),
        ("impersonate", "users"),
        ("create", "serviceaccounts", "--subresource=token", "-n", system),
        ("delete", "events", "-n", a),
        # Services and slices only by apply: never replaced, never an Endpoints object
        ("update", "services", "-n", a),
        ("list", "endpointslices.discovery.k8s.io", "-n", a),
        ("create", "endpoints", "-n", a),
        ("list", "events", "-n", a),
        ("list", "kopfpeerings.kopf.dev", "-n", a),
    ]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_same_identity_is_denied_what_it_must_not_need(
    flavor: Flavor, release: Release, kubectl: Runner, namespace: str
) -> None:
    a, b = release.watched, release.outside
    # what it needs, it has (in A only)
    for args in (
        ("list", "managedservices.steward.dev"),
        ("watch", "managedservices.steward.dev"),
        ("patch", "managedservices.steward.dev"),
        ("patch", "managedservices.steward.dev", "--subresource=status"),
        ("create", "events"),
        ("patch", "events"),
        ("get", "events"),
        ("get", "secrets"),
        ("get", "configmaps"),
        # endpoint.expose: Cluster
        ("get", "services"),
        ("create", "services"),
        ("patch", "services"),
        ("delete", "services"),
        ("create", "endpointslices.discovery.k8s.io"),
        ("patch", "endpointslices.discovery.k8s.io"),
    ):
        assert can_i(kubectl, release, *args, "-n", a), f"needed but denied: {args} in {a}"
    allowed = [
        args
        for args in [
            *_denied_common(release),
            *((*extra, "-n", a) for extra in flavor.denied_extra),
        ]
        if can_i(kubectl, release, *args)
    ]
    assert not allowed, f"the operator's identity may do what it must not need: {allowed}"

    # ... and real requests are refused by the apiserver (dry-run: harmless if they were not)
    kubectl("create", "secret", "generic", "outside", "-n", b, "--from-literal=k=v")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    crd = yaml.safe_load((CHART / "crds" / "kopf-peering.yaml").read_text().split("---", 2)[1])
    crd["metadata"]["name"] = "rbacprobes.kopf.dev"
    crd["spec"]["names"] = {"kind": "RbacProbe", "plural": "rbacprobes", "singular": "rbacprobe"}
    for args, stdin in (
        (("get", "secret", "outside", "-n", b), None),
        (("delete", "namespace", b, "--dry-run=server"), None),
        (("create", "-n", a, "--dry-run=server", "-f", "-"), json.dumps(pod)),
        (("create", "--dry-run=server", "-f", "-"), json.dumps(crd)),
        (("delete", "crd", MS_CRD, "--dry-run=server"), None),
    ):
        out = kubectl(
            *args,
            input=stdin,
            check=False,
            extra_env={"KUBECONFIG": str(release.kubeconfig)},
        )
        assert out.returncode != 0 and "Forbidden" in out.stderr, (args, out.stdout, out.stderr)
        assert f"system:serviceaccount:{release.system}:{SERVICE_ACCOUNT}" in out.stderr
    # the namespace and the CRD are still there
    kubectl("get", "namespace", b)
    kubectl("get", "crd", MS_CRD)


def test_kopf_peering_objects_and_rules_in_peering_mode(
    release_factory: Callable[[tuple[str, ...]], Release],
    kubectl: Runner,
    namespace: str,
) -> None:
    """Peering (replicas > 1): the KopfPeering exists in A, the identity may patch only it."""
    release = release_factory(("replicas=2", "terraform.secretsWrite=false"))
    kubectl("get", "kopfpeering", SERVICE_ACCOUNT, "-n", namespace)
    assert can_i(kubectl, release, "list", "kopfpeerings.kopf.dev", "-n", namespace)
    assert can_i(kubectl, release, "watch", "kopfpeerings.kopf.dev", "-n", namespace)
    assert can_i(
        kubectl, release, "patch", f"kopfpeerings.kopf.dev/{SERVICE_ACCOUNT}", "-n", namespace
    )
    assert not can_i(kubectl, release, "patch", "kopfpeerings.kopf.dev/other", "-n", namespace)
    assert not can_i(kubectl, release, "create", "kopfpeerings.kopf.dev", "-n", namespace)
    assert not can_i(kubectl, release, "list", "clusterkopfpeerings.kopf.dev")
    args = container(release.deployment)["args"]
    assert f"--peering={SERVICE_ACCOUNT}" in args


def _peers(kubectl: Runner, namespace: str) -> dict[str, dict[str, Any]]:
    obj = json.loads(
        kubectl("get", "kopfpeering", SERVICE_ACCOUNT, "-n", namespace, "-o", "json").stdout
    )
    return dict(obj.get("status") or {})


def test_two_replicas_peer_one_serves_and_the_other_takes_over(
    release_factory: Callable[[tuple[str, ...]], Release],
    kubectl: Runner,
    namespace: str,
    tmp_path: Path,
) -> None:
    """replicas=2 with the chart's identity: one replica works, the other stands by, then takes over.

    Both share the state directory, as with `persistence` on a ReadWriteMany claim.
    """
    release = release_factory(("replicas=2", "terraform.secretsWrite=false"))
    first = start_operator(release, tmp_path, pod_id="steward-0")
    second = start_operator(release, tmp_path, pod_id="steward-1", ports=(free_port(), free_port()))
    operators = {"steward-0": first, "steward-1": second}
    try:
        for op in operators.values():
            wait_for(lambda op=op: serving(op), timeout=30, step=0.5)
            assert op.proc.poll() is None, f"operator exited:\n{op.logs()}"
        assert_no_permission_problems(first, settle=2.0)
        try:
            peers = wait_for(
                lambda: (p := _peers(kubectl, namespace)).keys() >= operators.keys() and p,
                timeout=30,
            )
        except AssertionError:
            raise AssertionError(
                f"both replicas did not join the KopfPeering within 30 s: "
                f"{_peers(kubectl, namespace)}\n{first.logs()[-2000:]}"
            ) from None
        priorities = {name: peers[name]["priority"] for name in operators}
        assert len(set(priorities.values())) == 2, (
            f"both replicas have priority {priorities}: kopf pauses every peer sharing the "
            "top priority, so neither would ever serve (STEWARD_PEERING_PRIORITY=random)"
        )
        leader_id = max(priorities, key=lambda k: priorities[k])
        leader = operators[leader_id]
        standby = operators[next(k for k in operators if k != leader_id)]

        apply(kubectl, namespace, msvc("ha", http_daemon_spec()))
        obj = wait_ready(kubectl, namespace, "ha", timeout=90)
        # the leader started the workload; the standby (paused) did not touch it
        assert psutil.Process(pid_of(obj)).ppid() == leader.proc.pid

        # the leader goes (SIGTERM: it leaves the peering and the workload running)
        resumed = standby.logs().count("Resuming operations")
        leader.stop()
        wait_for(lambda: standby.logs().count("Resuming operations") > resumed, timeout=60)
        apply(kubectl, namespace, msvc("ha", http_daemon_spec(["--directory", "/"])))
        wait_for(
            lambda: (
                (o := get(kubectl, namespace, "ha"))["status"].get("observedGeneration") == 2
                and o["status"].get("state") == "active"
            ),
            timeout=90,
        )
        replaced = wait_ready(kubectl, namespace, "ha", timeout=60)
        assert psutil.Process(pid_of(replaced)).ppid() == standby.proc.pid
        assert not alive(pid_of(obj)), "the standby adopted and replaced the leader's daemon"
    finally:
        # delete while a replica still runs (finalizers); restart one if none is left
        if all(op.proc.poll() is not None for op in operators.values()):
            operators["steward-2"] = start_operator(
                release, tmp_path, pod_id="steward-2", ports=(free_port(), free_port())
            )
        delete_all_msvc(kubectl, namespace)
        for op in operators.values():
            op.stop()
        for name, op in operators.items():
            print(f"--- {name}\n{op.logs()[-3000:]}")
    for op in operators.values():
        assert_no_permission_problems(op)
