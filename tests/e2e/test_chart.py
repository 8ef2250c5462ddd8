"""The Helm chart (charts/steward) with the real helm against the real kube-apiserver.

`helm lint --strict`; what the templates render for each mode (cluster-wide,
namespaced, peering, Docker access); the rendered objects accepted by the
apiserver (`kubectl apply --dry-run=server`, PodSecurity `restricted` for the
defaults); `helm install` / `upgrade` / `uninstall`; values.schema.json
rejecting bad values. The RBAC itself is proven with the operator's own
identity in test_rbac.py.

No controller-manager runs in the test control plane: Deployments never get
pods, so the tests assert the objects, not running pods.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from steward.cli import build_parser
from tests.support import paths
from tests.support.chart import CHART, KOPF_CRDS, MS_CRD, container, pod_spec
from tests.support.kubectl import Runner
from tests.support.namespaces import scratch_namespace

# ---------------------------------------------------------------- the RBAC the chart must grant
# (apiGroup, resource, verb, resourceName or None): the exact rules, no more, no less.
Rule = tuple[str, str, str, str | None]

BASE_RULES: frozenset[Rule] = frozenset(
    {("steward.dev", "managedservices", v, None) for v in ("list", "watch", "patch")}
    | {
        ("steward.dev", "managedservices/status", "patch", None),
        ("", "events", "create", None),
        ("", "events", "get", None),
        ("", "events", "patch", None),
        # endpoint.expose: Cluster
        ("", "services", "get", None),
        ("", "services", "list", None),
        ("", "services", "create", None),
        ("", "services", "patch", None),
        ("", "services", "delete", None),
        ("discovery.k8s.io", "endpointslices", "create", None),
        ("discovery.k8s.io", "endpointslices", "patch", None),
        ("discovery.k8s.io", "endpointslices", "delete", None),
        ("", "secrets", "get", None),
        ("", "configmaps", "get", None),
    }
)
SECRETS_WRITE_RULES: frozenset[Rule] = frozenset(
    {("", "secrets", v, None) for v in ("list", "create", "update", "delete")}
    | {("coordination.k8s.io", "leases", v, None) for v in ("get", "create", "update", "delete")}
)
# tenancy.enforcePolicy (default on): the served namespaces' labels, one by one ...
NAMESPACE_RULES: frozenset[Rule] = frozenset({("", "namespaces", "get", None)})
# ... and the cluster-scoped StewardPolicies, read-only (a ClusterRole in every mode).
POLICY_RULES: frozenset[Rule] = frozenset(
    {("steward.dev", "stewardpolicies", v, None) for v in ("get", "list", "watch")}
)
# tenancy.sandbox (default on): tokens of each namespace's Terraform ServiceAccount only.
TOKEN_RULES: frozenset[Rule] = frozenset(
    {("", "serviceaccounts/token", "create", "steward-terraform")}
)
TENANCY_OFF = ("--set", "tenancy.enforcePolicy=false", "--set", "tenancy.sandbox.enabled=false")
# The capabilities the root operator keeps with the sandbox on (values.yaml).
SANDBOX_CAPS = ["SETUID", "SETGID", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE"]


def pod_security(uid: int, **extra: Any) -> dict[str, Any]:
    """The pod securityContext the chart renders to run as UID (and group UID)."""
    return {
        "runAsNonRoot": uid != 0,
        "runAsUser": uid,
        "runAsGroup": uid,
        **extra,
        "supplementalGroups": [],
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(*add: str) -> dict[str, Any]:
    """A container securityContext: no escalation, a read-only root, no capability but ADD."""
    caps: dict[str, Any] = {"drop": ["ALL"], **({"add": list(add)} if add else {})}
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": caps}


def peering_rules(resource: str, name: str) -> frozenset[Rule]:
    return frozenset(
        {
            ("kopf.dev", resource, "list", None),
            ("kopf.dev", resource, "watch", None),
            ("kopf.dev", resource, "patch", name),
        }
    )


def expand_rules(rules: list[dict[str, Any]]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


# ---------------------------------------------------------------- helpers (also used by test_rbac)
def render(
    helm: Runner, *args: str, release: str = "r", namespace: str = "steward-system"
) -> list[dict[str, Any]]:
    """`helm template` -> the rendered objects."""
    out = helm("template", release, CHART, "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def sets(*values: str) -> list[str]:
    """``--set VALUE`` for each of VALUES."""
    return [arg for value in values for arg in ("--set", value)]


def find(
    docs: list[dict[str, Any]], kind: str, namespace: str | None = None
) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, namespace)
    assert len(found) == 1, f"expected one {kind} (namespace {namespace}), got {len(found)}"
    return found[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def assert_bound(docs: list[dict[str, Any]], role: str, account: str, namespace: str) -> None:
    """The one ClusterRoleBinding grants ClusterRole ROLE to ServiceAccount NAMESPACE/ACCOUNT."""
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    ]


def kopf_crd_names(kubectl: Runner) -> set[str]:
    out = kubectl("get", "crd", "-o", "name").stdout.split()
    return {n.split("/", 1)[1] for n in out} & set(KOPF_CRDS)


@pytest.fixture
def kopf_crds(kubectl: Runner, chart_crds: None) -> None:
    """The kopf peering CRDs really installed (a dry run of a KopfPeering needs its CRD)."""
    kubectl("apply", "-f", CHART / "crds" / "kopf-peering.yaml")
    kubectl(
        "wait", "--for=condition=Established", *(f"crd/{n}" for n in KOPF_CRDS), "--timeout=60s"
    )


# ---------------------------------------------------------------- lint
@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "watchNamespaces={a,b}"],
        ["--set", "replicas=2"],
        ["--set", "watchNamespaces={a}", "--set", "peering.enabled=true"],
        ["--set", "docker.mode=socket", "--set", "podSecurityContext.supplementalGroups={999}"],
        ["--set", "docker.mode=dind"],
        ["--set", "persistence.enabled=true", "--set", "metrics.service.enabled=true"],
        ["--set", "terraform.secretsWrite=false", "--set", "metrics.enabled=false"],
        list(TENANCY_OFF),
        ["--set", "watchNamespaces={a}", "--set", "tenancy.sandbox.enabled=false"],
        ["--set", "agent.enabled=true"],
        ["--set", "agent.enabled=true", "--set", "agent.serve=true"],
    ],
    ids=[
        "defaults",
        "namespaced",
        "replicas",
        "peering",
        "socket",
        "dind",
        "persistence",
        "minimal",
        "tenancy-off",
        "namespaced-no-sandbox",
        "agent",
        "serve",
    ],
)
def test_helm_lint_strict(helm: Runner, values: list[str]) -> None:
    out = helm("lint", "--strict", CHART, *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


# ---------------------------------------------------------------- what the templates render
def test_defaults_render_cluster_wide_least_privilege(helm: Runner) -> None:
    docs = render(helm, release="r", namespace="sys")
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
        "StewardPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    role = one(docs, "ClusterRole")
    assert role["metadata"]["name"] == "sys-r-steward"
    assert expand_rules(role["rules"]) == (
        BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | POLICY_RULES | TOKEN_RULES
    )
    assert_bound(docs, "sys-r-steward", "r-steward", "sys")
    assert one(docs, "ServiceAccount")["metadata"] == {
        **one(docs, "ServiceAccount")["metadata"],
        "name": "r-steward",
        "namespace": "sys",
    }

    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "r-steward"
    assert [c["name"] for c in pod["containers"]] == ["operator"]
    op = container(deploy)
    assert op["image"] == "steward:0.1.0"
    assert op["imagePullPolicy"] == "IfNotPresent"
    assert op["command"] == ["steward"]
    assert op["args"] == [
        "--state-dir=/var/lib/steward",
        "run",
        "--log-format=json",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--daemon-workers=8",
        "--container-workers=8",
        "--terraform-workers=2",
        "--enforce-policy",
        "--sandbox",
    ]
    env = env_of(op)
    assert env["STEWARD_TERRAFORM_BINARY"] == "auto"
    assert env["STEWARD_TERRAFORM_STATE_BACKEND"] == "local"
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "DOCKER_HOST" not in env and "STEWARD_PEERING_PRIORITY" not in env
    assert env["STEWARD_SANDBOX_UIDS"] == "1879048192-65536"
    # The sandbox switches uids: root with the sandbox's capabilities only, no fsGroup (the
    # kubelet then writes the ServiceAccount token 0600 root's); read-only root filesystem;
    # writable state dir and /tmp only.
    assert pod["securityContext"] == pod_security(0)
    assert op["securityContext"] == container_security(*SANDBOX_CAPS)
    mounts = {m["mountPath"]: m["name"] for m in op["volumeMounts"]}
    assert mounts == {"/var/lib/steward": "state", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["emptyDir"] == {} and volumes["tmp"]["emptyDir"] == {}
    assert not any("hostPath" in v for v in pod["volumes"])
    # metrics and liveness
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert ports == {"metrics": 9090, "healthz": 8080}
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert op["resources"]["requests"] and op["resources"]["limits"]["memory"]


def test_chart_args_parse_with_the_real_cli(helm: Runner) -> None:
    """The Deployment's args are accepted by `steward run` (chart and CLI cannot drift apart)."""
    deploy = one(
        render(
            helm,
            *sets(
                "watchNamespaces={a,b}",
                "replicas=2",
                "operator.verbose=true",
                "operator.logFormat=text",
            ),
        ),
        "Deployment",
    )
    args = build_parser().parse_args(container(deploy)["args"])
    assert args.command == "run"
    assert args.state_dir == "/var/lib/steward"
    assert args.namespace == ["a", "b"]
    assert args.peering == "r-steward"
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert args.metrics_port == 9090
    assert args.log_format == "text" and args.verbose is True
    assert (args.daemon_workers, args.container_workers, args.terraform_workers) == (8, 8, 2)


def test_namespaced_mode_renders_a_role_per_namespace_and_nothing_cluster_wide(
    helm: Runner,
) -> None:
    docs = render(
        helm,
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "terraform.secretsWrite=false",
        *TENANCY_OFF,
    )
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert not find(docs, "KopfPeering") and not find(docs, "ClusterKopfPeering")
    for ns in ("a", "b"):
        role = one(docs, "Role", ns)
        assert expand_rules(role["rules"]) == BASE_RULES
        binding = one(docs, "RoleBinding", ns)
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "r-steward", "namespace": "steward-system"}
        ]
    args = container(one(docs, "Deployment"))["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]
    assert not any(a.startswith("--peering") for a in args)
    assert "--enforce-policy" not in args and "--sandbox" not in args


def test_namespaced_mode_with_tenancy_defaults(helm: Runner) -> None:
    """--enforce-policy in namespaced mode: namespace get in each Role (its own namespace
    only) and the one cluster-scoped grant, read-only on the StewardPolicies."""
    docs = render(helm, "--set", "watchNamespaces={a,b}", "--set", "terraform.secretsWrite=false")
    for ns in ("a", "b"):
        assert expand_rules(one(docs, "Role", ns)["rules"]) == (
            BASE_RULES | NAMESPACE_RULES | TOKEN_RULES
        )
    role = one(docs, "ClusterRole")
    assert role["metadata"]["name"] == "steward-system-r-steward-policies"
    assert expand_rules(role["rules"]) == POLICY_RULES
    assert_bound(docs, "steward-system-r-steward-policies", "r-steward", "steward-system")
    args = container(one(docs, "Deployment"))["args"]
    assert args[-2:] == ["--enforce-policy", "--sandbox"]


def test_sandbox_off_keeps_the_unprivileged_pod(helm: Runner) -> None:
    """tenancy.sandbox.enabled=false: uid 65532, no capability, no uid range; enforcePolicy
    stays on by itself (and its RBAC with it)."""
    docs = render(helm, "--set", "tenancy.sandbox.enabled=false")
    deploy = one(docs, "Deployment")
    pod = pod_spec(deploy)
    op = container(deploy)
    assert pod["securityContext"] == pod_security(65532, fsGroup=65532)
    assert op["securityContext"] == container_security()
    assert "--sandbox" not in op["args"] and "--enforce-policy" in op["args"]
    assert "STEWARD_SANDBOX_UIDS" not in env_of(op)
    rules = expand_rules(one(docs, "ClusterRole")["rules"])
    assert rules == BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | POLICY_RULES
    # ... and with enforcePolicy off too, the RBAC of before: no namespaces, no policies.
    docs = render(helm, *TENANCY_OFF)
    assert expand_rules(one(docs, "ClusterRole")["rules"]) == BASE_RULES | SECRETS_WRITE_RULES
    op = container(one(docs, "Deployment"))
    assert "--enforce-policy" not in op["args"] and "--sandbox" not in op["args"]


def test_sandbox_uid_range_and_capabilities_values(helm: Runner) -> None:
    """The uid range reaches the operator as STEWARD_SANDBOX_UIDS (its parser's format);
    capabilities.add from securityContext and the sandbox's are merged, once each."""
    from steward.k8s.config import OperatorConfig

    docs = render(
        helm,
        *sets(
            "tenancy.sandbox.uidRange.start=200000",
            "tenancy.sandbox.uidRange.count=1000",
            "securityContext.capabilities.add={NET_BIND_SERVICE,KILL}",
            "podSecurityContext.supplementalGroups={998}",
        ),
    )
    deploy = one(docs, "Deployment")
    op = container(deploy)
    env = env_of(op)
    assert env["STEWARD_SANDBOX_UIDS"] == "200000-1000"
    config = OperatorConfig.from_env({"STEWARD_SANDBOX_UIDS": env["STEWARD_SANDBOX_UIDS"]})
    assert (config.sandbox_uid_start, config.sandbox_uid_count) == (200000, 1000)
    assert op["securityContext"]["capabilities"]["add"] == [
        "NET_BIND_SERVICE",
        "KILL",
        *(c for c in SANDBOX_CAPS if c != "KILL"),
    ]
    psc = pod_spec(deploy)["securityContext"]
    assert (psc["runAsUser"], psc["supplementalGroups"]) == (0, [998])
    args = build_parser().parse_args(op["args"])
    assert args.sandbox is True and args.enforce_policy is True


@pytest.mark.parametrize("how", ["replicas", "enabled"])
def test_peering_mode_namespaced(helm: Runner, how: str) -> None:
    extra = ["--set", "replicas=3"] if how == "replicas" else ["--set", "peering.enabled=true"]
    docs = render(helm, "--set", "watchNamespaces={a,b}", *extra)
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == (3 if how == "replicas" else 1)
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate"}
    op = container(deploy)
    assert "--peering=r-steward" in op["args"]
    assert env_of(op)["STEWARD_PEERING_PRIORITY"] == "random"
    for ns in ("a", "b"):
        peering = one(docs, "KopfPeering", ns)
        assert (peering["apiVersion"], peering["metadata"]["name"]) == ("kopf.dev/v1", "r-steward")
        rules = expand_rules(one(docs, "Role", ns)["rules"])
        assert rules == BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | TOKEN_RULES | (
            peering_rules("kopfpeerings", "r-steward")
        )
    assert not find(docs, "ClusterKopfPeering")
    assert expand_rules(one(docs, "ClusterRole")["rules"]) == POLICY_RULES


def test_peering_mode_cluster_wide(helm: Runner) -> None:
    docs = render(helm, "--set", "replicas=2", "--set", "peering.name=steward-ha")
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "steward-ha"
    assert not find(docs, "KopfPeering")
    rules = expand_rules(one(docs, "ClusterRole")["rules"])
    assert (
        rules
        == BASE_RULES
        | SECRETS_WRITE_RULES
        | NAMESPACE_RULES
        | POLICY_RULES
        | TOKEN_RULES
        | (peering_rules("clusterkopfpeerings", "steward-ha"))
    )
    assert "--peering=steward-ha" in container(one(docs, "Deployment"))["args"]


def test_docker_socket_mode(helm: Runner) -> None:
    docs = render(
        helm, "--set", "docker.mode=socket", "--set", "podSecurityContext.supplementalGroups={998}"
    )
    pod = pod_spec(one(docs, "Deployment"))
    op = container(one(docs, "Deployment"))
    assert env_of(op)["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    volume = next(v for v in pod["volumes"] if v["name"] == "docker-socket")
    assert volume["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    assert {"name": "docker-socket", "mountPath": "/var/run/docker.sock"} in op["volumeMounts"]
    assert pod["securityContext"]["supplementalGroups"] == [998]
    assert pod["securityContext"]["runAsNonRoot"] is False  # the sandbox's root
    assert [c["name"] for c in pod["containers"]] == ["operator"]


def test_docker_dind_mode_is_a_privileged_sidecar_only(helm: Runner) -> None:
    docs = render(helm, "--set", "docker.mode=dind", "--set", "docker.dind.socketGroup=4242")
    deploy = one(docs, "Deployment")
    pod = pod_spec(deploy)
    dind, op = container(deploy, "dind"), container(deploy)
    assert dind["image"] == "docker:dind"
    assert dind["securityContext"]["privileged"] is True
    assert "--group=4242" in dind["args"]
    assert not any(a.startswith("--host=tcp") for a in dind["args"])
    assert env_of(dind)["DOCKER_TLS_CERTDIR"] == ""
    # the operator itself stays unprivileged and reaches dind through the shared socket volume
    assert "privileged" not in op["securityContext"]
    assert op["securityContext"]["readOnlyRootFilesystem"] is True
    assert env_of(op)["DOCKER_HOST"] == "unix:///run/steward-dind/docker.sock"
    assert 4242 in pod["securityContext"]["supplementalGroups"]
    assert not any("hostPath" in v for v in pod["volumes"])


def test_values_for_terraform_resources_scheduling_and_env(helm: Runner) -> None:
    docs = render(
        helm,
        *sets(
            "terraform.binary=tofu",
            "terraform.stateBackend=kubernetes",
            "terraform.secretsWrite=false",
            "resources.limits.cpu=2",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "extraEnv[0].name=FOO",
            "extraEnv[0].value=bar",
            "image.repository=registry.example/steward",
            "image.tag=9.9.9",
            "image.pullPolicy=Always",
            "liveness.enabled=false",
            "metrics.enabled=false",
        ),
    )
    deploy = one(docs, "Deployment")
    pod = pod_spec(deploy)
    op = container(deploy)
    env = env_of(op)
    assert (env["STEWARD_TERRAFORM_BINARY"], env["STEWARD_TERRAFORM_STATE_BACKEND"]) == (
        "tofu",
        "kubernetes",
    )
    assert env["FOO"] == "bar"
    assert op["resources"]["limits"]["cpu"] == 2
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert (op["image"], op["imagePullPolicy"]) == ("registry.example/steward:9.9.9", "Always")
    assert "livenessProbe" not in op
    assert not op.get("ports")
    assert not any(a.startswith(("--liveness", "--metrics-port")) for a in op["args"])
    assert "prometheus.io/scrape" not in (
        deploy["spec"]["template"]["metadata"].get("annotations") or {}
    )
    assert expand_rules(one(docs, "ClusterRole")["rules"]) == (
        BASE_RULES | NAMESPACE_RULES | POLICY_RULES | TOKEN_RULES
    )


# ---------------------------------------------------------------- accepted by the real apiserver
@pytest.fixture
def other_namespace(kubectl: Runner) -> Iterator[str]:
    with scratch_namespace(kubectl, "e2e-chart-other") as name:
        yield name


DRY_RUN_MODES: dict[str, list[str]] = {
    "defaults": [],
    "namespaced": ["--set", "watchNamespaces={{ns},{other}}"],
    "namespaced-peering": ["--set", "watchNamespaces={{ns},{other}}", "--set", "replicas=2"],
    "cluster-wide-peering": ["--set", "peering.enabled=true"],
    "docker-socket": [
        "--set",
        "docker.mode=socket",
        "--set",
        "podSecurityContext.supplementalGroups={999}",
    ],
    "docker-dind": ["--set", "docker.mode=dind"],
    "persistence-metrics-service": [
        "--set",
        "persistence.enabled=true",
        "--set",
        "metrics.service.enabled=true",
    ],
    "tenancy-off": list(TENANCY_OFF),
    "namespaced-no-sandbox": [
        "--set",
        "watchNamespaces={{ns}}",
        "--set",
        "tenancy.sandbox.enabled=false",
    ],
    "agent": ["--set", "agent.enabled=true"],
    "serve": ["--set", "agent.enabled=true", "--set", "agent.serve=true"],
    "serve-namespaced": [
        *("--set", "agent.enabled=true", "--set", "agent.serve=true"),
        *("--set", "watchNamespaces={{ns},{other}}"),
    ],
}


@pytest.mark.parametrize("mode", list(DRY_RUN_MODES))
def test_rendered_chart_server_dry_run(
    helm: Runner,
    kubectl: Runner,
    namespace: str,
    other_namespace: str,
    mode: str,
    request: pytest.FixtureRequest,
    chart_crds: None,
) -> None:
    # the chart renders a StewardPolicy: its CRD must really exist for a server dry run
    if "peering" in mode:
        request.getfixturevalue("kopf_crds")
    values = [
        v.replace("{ns}", namespace).replace("{other}", other_namespace)
        for v in DRY_RUN_MODES[mode]
    ]
    manifest = helm(
        "template", "dry", CHART, "--namespace", namespace, "--include-crds", *values
    ).stdout
    objects = [d for d in yaml.safe_load_all(manifest) if d]
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == len(objects), out.stdout
    assert all(line.endswith("(server dry run)") for line in lines), out.stdout
    # nothing was created
    assert kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_pod_security_baseline_with_the_sandbox_restricted_without(
    helm: Runner, kubectl: Runner, namespace: str
) -> None:
    """The defaults (sandbox on: root + six capabilities) are PodSecurity `baseline`, and
    `restricted` names exactly those two fields; with the sandbox off, `restricted`."""

    def warnings(level: str, *values: str) -> str:
        kubectl(
            "label",
            "namespace",
            namespace,
            f"pod-security.kubernetes.io/warn={level}",
            "--overwrite",
        )
        manifest = helm("template", "psa", CHART, "--namespace", namespace, *values).stdout
        return kubectl("apply", "--dry-run=server", "-f", "-", input=manifest).stderr

    assert "PodSecurity" not in warnings("baseline"), "the default pod must be `baseline`"
    restricted = warnings("restricted")
    assert (
        'container "operator" must not include "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID" in securityContext.capabilities.add'
        in restricted
    ), restricted
    assert "runAsNonRoot != true" in restricted and "runAsUser=0" in restricted, restricted
    assert "PodSecurity" not in warnings("restricted", "--set", "tenancy.sandbox.enabled=false")
    no_sandbox = (
        "--set",
        "tenancy.sandbox.enabled=false",
        "--set",
        "watchNamespaces={" + namespace + "}",
    )
    assert "PodSecurity" not in warnings("restricted", *no_sandbox)
    socket = warnings(
        "restricted", "--set", "docker.mode=socket", "--set", "tenancy.sandbox.enabled=false"
    )
    assert 'volume "docker-socket" uses restricted volume type "hostPath"' in socket
    assert 'container "operator"' not in socket
    dind = warnings(
        "restricted", "--set", "docker.mode=dind", "--set", "tenancy.sandbox.enabled=false"
    )
    assert 'container "dind" must not set securityContext.privileged=true' in dind
    assert 'container "operator"' not in dind


# ---------------------------------------------------------------- install / upgrade / uninstall
def test_install_upgrade_uninstall(
    helm: Runner, kubectl: Runner, namespace: str, chart_crds: None
) -> None:
    release, ns = "rel", namespace
    cluster_name = f"{ns}-rel-steward"[:63]

    def deployment() -> dict[str, Any]:
        return json.loads(kubectl("get", "deploy", "rel-steward", "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def exists(*what: str) -> bool:
        return kubectl("get", *what, "-o", "name", check=False).returncode == 0

    helm("install", release, CHART, "--namespace", ns, timeout=120)
    try:
        # crds/ were installed (or already there) and are established
        kubectl(
            "wait",
            "--for=condition=Established",
            f"crd/{MS_CRD}",
            *(f"crd/{n}" for n in KOPF_CRDS),
            "--timeout=60s",
        )
        d1 = deployment()
        assert d1["metadata"]["generation"] == 1
        assert d1["spec"]["strategy"]["type"] == "Recreate"
        assert container(d1)["image"] == "steward:0.1.0"
        assert d1["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert exists("serviceaccount", "rel-steward", "-n", ns)
        role = json.loads(kubectl("get", "clusterrole", cluster_name, "-o", "json").stdout)
        assert expand_rules(role["rules"]) == (
            BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | POLICY_RULES | TOKEN_RULES
        )
        assert exists("clusterrolebinding", cluster_name)

        # upgrade: a new image tag and namespaced mode -> the Deployment changes, the
        # ClusterRole goes, a Role appears in the watched namespace
        helm(
            "upgrade",
            release,
            CHART,
            "--namespace",
            ns,
            *sets(
                "image.tag=0.1.1",
                f"watchNamespaces={{{ns}}}",
                "operator.logFormat=text",
            ),
            timeout=120,
        )
        d2 = deployment()
        assert d2["metadata"]["generation"] == 2
        op = container(d2)
        assert op["image"] == "steward:0.1.1"
        assert f"--namespace={ns}" in op["args"] and "--log-format=text" in op["args"]
        assert not exists("clusterrole", cluster_name)
        assert not exists("clusterrolebinding", cluster_name)
        role = json.loads(kubectl("get", "role", "rel-steward", "-n", ns, "-o", "json").stdout)
        assert expand_rules(role["rules"]) == (
            BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | TOKEN_RULES
        )
        assert exists("clusterrole", f"{cluster_name}-policies")
        assert exists("rolebinding", "rel-steward", "-n", ns)
        history = json.loads(helm("history", release, "--namespace", ns, "-o", "json").stdout)
        assert [h["revision"] for h in history] == [1, 2]
        assert history[-1]["status"] == "deployed"
        assert json.loads(helm("get", "values", release, "--namespace", ns, "-o", "json").stdout)[
            "image"
        ] == {"tag": "0.1.1"}
    finally:
        helm(
            "uninstall",
            release,
            "--namespace",
            ns,
            "--wait",
            "--timeout=60s",
            check=False,
            timeout=120,
        )
    for what in (
        ("deploy", "rel-steward", "-n", ns),
        ("serviceaccount", "rel-steward", "-n", ns),
        ("role", "rel-steward", "-n", ns),
        ("rolebinding", "rel-steward", "-n", ns),
        ("clusterrole", cluster_name),
        ("clusterrole", f"{cluster_name}-policies"),
        ("clusterrolebinding", f"{cluster_name}-policies"),
    ):
        assert not exists(*what), f"{what} left after helm uninstall"
    assert helm("list", "--namespace", ns, "-q").stdout.strip() == ""
    # Helm never deletes CRDs (that would delete every ManagedService)
    assert exists("crd", MS_CRD)


# ---------------------------------------------------------------- values.schema.json
BAD_VALUES = [
    (
        "terraform.binary=terraformm",
        ["/terraform/binary", "'auto', 'terraform', 'tofu', 'bundled'"],
    ),
    ("replica=2", ["additional properties 'replica' not allowed"]),
    ("watchNamespaces={Bad_NS}", ["/watchNamespaces/0", "Bad_NS"]),
    ("docker.mode=podman", ["/docker/mode", "'none', 'socket', 'dind'"]),
    ("metrics.port=70000", ["/metrics/port"]),
    ("operator.logFormat=xml", ["/operator/logFormat"]),
    ("peering.priority=high", ["/peering/priority"]),
    ("tenancy.sandbox.uidRange.start=0", ["/tenancy/sandbox/uidRange/start"]),
    ("tenancy.sandbox.uidRange.count=0", ["/tenancy/sandbox/uidRange/count"]),
    ("tenancy.sandbox.capabilities={cap_sys_admin}", ["/tenancy/sandbox/capabilities/0"]),
    ("tenancy.sandbox.enabled=yes", ["/tenancy/sandbox/enabled"]),
    ("agent.address=nodeIP", ["/agent/address", "'podIP', 'hostIP', 'none'"]),
    ("agent.leaseDurationSeconds=0", ["/agent/leaseDurationSeconds"]),
    ("agent.leaseNamespace=Kube_Node_Lease", ["/agent/leaseNamespace"]),
]


@pytest.mark.parametrize(("value", "expected"), BAD_VALUES, ids=[v for v, _ in BAD_VALUES])
def test_schema_rejects_bad_values_with_a_clear_message(
    helm: Runner, namespace: str, value: str, expected: list[str], chart_crds: None
) -> None:
    # (helm install creates crds/ before it validates values: chart_crds cleans up)
    for command in (
        ["template", "bad", CHART],
        ["install", "bad", CHART, "--namespace", namespace],
    ):
        out = helm(*command, "--set", value, check=False)
        assert out.returncode != 0, f"helm {command[0]} accepted {value}"
        assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
        for text in expected:
            assert text in out.stderr, out.stderr
    assert helm("list", "--namespace", namespace, "-q").stdout.strip() == ""


def test_template_guard_persistence_with_replicas(helm: Runner) -> None:
    out = helm(
        "template",
        "bad",
        CHART,
        "--set",
        "persistence.enabled=true",
        "--set",
        "replicas=2",
        check=False,
    )
    assert out.returncode != 0
    assert "persistence.enabled with replicas > 1 needs a ReadWriteMany claim" in out.stderr
    ok = helm(
        "template",
        "ok",
        CHART,
        *sets(
            "persistence.enabled=true",
            "replicas=2",
            "persistence.accessModes={ReadWriteMany}",
        ),
    )
    assert "kind: PersistentVolumeClaim" in ok.stdout


def test_template_guard_sandbox_uid_range_below_2_31(helm: Runner) -> None:
    out = helm(
        "template",
        "bad",
        CHART,
        "--set",
        "tenancy.sandbox.uidRange.start=2147483000",
        "--set",
        "tenancy.sandbox.uidRange.count=1000",
        check=False,
    )
    assert out.returncode != 0
    assert "tenancy.sandbox.uidRange: start + count must not pass 2147483648" in out.stderr
    # the range is the sandbox's: with it off the values are not checked
    helm(
        "template",
        "ok",
        CHART,
        *sets(
            "tenancy.sandbox.enabled=false",
            "tenancy.sandbox.uidRange.start=2147483000",
            "tenancy.sandbox.uidRange.count=1000",
        ),
    )


def test_sandbox_names_the_terraform_service_account(helm: Runner) -> None:
    """The operator mints tokens of this ServiceAccount only, and is told its name."""
    docs = render(helm, "--set", "tenancy.sandbox.terraformServiceAccount=tf-runner")
    env = env_of(container(one(docs, "Deployment")))
    assert env["STEWARD_TERRAFORM_SERVICE_ACCOUNT"] == "tf-runner"
    rules = expand_rules(one(docs, "ClusterRole")["rules"])
    assert ("", "serviceaccounts/token", "create", "tf-runner") in rules
    assert not {r for r in rules if r[1] == "serviceaccounts/token" and r[3] != "tf-runner"}
    off = render(helm, "--set", "tenancy.sandbox.enabled=false")
    assert "STEWARD_TERRAFORM_SERVICE_ACCOUNT" not in env_of(container(one(off, "Deployment")))
    assert not {r for r in expand_rules(one(off, "ClusterRole")["rules"]) if "token" in r[1]}


# ---------------------------------------------------------------- the agent DaemonSet (agent.*)
AGENT_RBAC = paths.REPO / "deploy" / "agent-rbac.yaml"


def agent_rbac_rules() -> dict[str, set[Rule]]:
    """deploy/agent-rbac.yaml's rules by kind: the chart's agent gets exactly these."""
    docs = [d for d in yaml.safe_load_all(AGENT_RBAC.read_text()) if d]
    return {
        d["kind"]: expand_rules(d["rules"]) for d in docs if d["kind"] in ("ClusterRole", "Role")
    }


def agent_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"
    ]


def test_agent_is_off_by_default(helm: Runner) -> None:
    docs = render(helm)
    assert not find(docs, "DaemonSet") and not agent_docs(docs)
    assert [d["metadata"]["name"] for d in find(docs, "ServiceAccount")] == ["r-steward"]


def test_agent_daemonset_downward_api_and_least_privilege(helm: Runner) -> None:
    """agent.enabled: a DaemonSet running `steward agent --node $(NODE_NAME)` with the name
    from spec.nodeName, its own ServiceAccount, deploy/agent-rbac.yaml's rules exactly (no
    wildcard), the operator's image and an unprivileged pod without probes."""
    docs = render(helm, "--set", "agent.enabled=true", release="r", namespace="sys")
    ds = one(docs, "DaemonSet", "sys")
    assert ds["metadata"]["name"] == "r-steward-agent"
    pod = pod_spec(ds)
    (agent,) = pod["containers"]
    assert (agent["name"], agent["command"]) == ("agent", ["steward"])
    assert agent["args"] == [
        "agent",
        "--node=$(NODE_NAME)",
        "--address=$(POD_IP)",
        "--lease-namespace=kube-node-lease",
        "--lease-duration=40",
        "--renew-interval=10",
    ]
    env = env_of(agent)
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # The operator's image (one image holds both) and the real CLI's flags.
    assert (agent["image"], agent["imagePullPolicy"]) == ("steward:0.1.0", "IfNotPresent")
    args = build_parser().parse_args(agent["args"])
    assert (args.command, args.node, args.address) == ("agent", "$(NODE_NAME)", ["$(POD_IP)"])
    assert (args.lease_duration, args.renew_interval) == (40.0, 10.0)
    assert args.lease_namespace == "kube-node-lease"
    # No health endpoint, so no probes; unprivileged (PodSecurity restricted).
    assert not {"livenessProbe", "readinessProbe", "startupProbe", "ports"} & set(agent)
    assert pod["securityContext"] == pod_security(65532)
    assert agent["securityContext"] == container_security()
    assert not any("hostPath" in v for v in pod["volumes"])
    assert not pod.get("hostNetwork") and "tolerations" not in pod
    # Its own labels: the operator Deployment's selector never matches an agent pod.
    deploy_selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert not deploy_selector.items() <= pod_labels.items(), (deploy_selector, pod_labels)

    # Its own ServiceAccount, bound to exactly deploy/agent-rbac.yaml's rules.
    assert pod["serviceAccountName"] == "r-steward-agent"
    assert "r-steward-agent" in [d["metadata"]["name"] for d in find(docs, "ServiceAccount", "sys")]
    shipped = agent_rbac_rules()
    roles = {d["metadata"]["name"]: d for d in find(docs, "ClusterRole")}
    assert expand_rules(roles["sys-r-steward-agent"]["rules"]) == shipped["ClusterRole"]
    lease_role = one(docs, "Role", "kube-node-lease")
    assert lease_role["metadata"]["name"] == "sys-r-steward-agent"
    assert expand_rules(lease_role["rules"]) == shipped["Role"]
    subject = [{"kind": "ServiceAccount", "name": "r-steward-agent", "namespace": "sys"}]
    crb = next(
        d
        for d in find(docs, "ClusterRoleBinding")
        if d["metadata"]["name"] == "sys-r-steward-agent"
    )
    assert crb["roleRef"]["name"] == "sys-r-steward-agent" and crb["subjects"] == subject
    rb = one(docs, "RoleBinding", "kube-node-lease")
    assert (rb["roleRef"]["kind"], rb["roleRef"]["name"]) == ("Role", "sys-r-steward-agent")
    assert rb["subjects"] == subject
    for role in agent_docs(docs):
        for rule in role.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
    # The operator's own RBAC is unchanged by the agent.
    assert expand_rules(roles["sys-r-steward"]["rules"]) == (
        BASE_RULES | SECRETS_WRITE_RULES | NAMESPACE_RULES | POLICY_RULES | TOKEN_RULES
    )


def test_agent_values(helm: Runner) -> None:
    docs = render(
        helm,
        *sets(
            "agent.enabled=true",
            "image.repository=registry.example/steward",
            "image.tag=9.9.9",
            "agent.image.tag=1.0.0",
            "agent.image.pullPolicy=Always",
            "agent.address=hostIP",
            "agent.leaseNamespace=steward-leases",
            "agent.leaseDurationSeconds=20",
        ),
        "--set-json",
        "agent.renewIntervalSeconds=2.5",
        *sets(
            "agent.labels.zone=a",
            "agent.verbose=true",
            "agent.extraArgs={--max-services=20,--extended-resource=nvidia.com/gpu=2}",
            "agent.tolerations[0].operator=Exists",
            "agent.priorityClassName=system-node-critical",
            "agent.serviceAccount.name=host-agent",
            "agent.extraEnv[0].name=DOCKER_HOST",
            "agent.extraEnv[0].value=unix:///run/docker.sock",
        ),
        "--set-string",
        "agent.nodeSelector.gpu=true",
    )
    ds = one(docs, "DaemonSet")
    pod = pod_spec(ds)
    (agent,) = pod["containers"]
    assert (agent["image"], agent["imagePullPolicy"]) == (
        "registry.example/steward:1.0.0",
        "Always",
    )
    args = build_parser().parse_args(agent["args"])
    assert args.address == ["$(HOST_IP)"] and args.label == ["zone=a"] and args.verbose
    assert (args.lease_namespace, args.lease_duration, args.renew_interval) == (
        "steward-leases",
        20.0,
        2.5,
    )
    assert (args.max_services, args.extended_resource) == (20, ["nvidia.com/gpu=2"])
    env = env_of(agent)
    assert env["HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}} and "POD_IP" not in env
    assert env["DOCKER_HOST"] == "unix:///run/docker.sock"
    assert pod["nodeSelector"] == {"gpu": "true"}
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == "host-agent"
    assert (
        one(docs, "Role", "steward-leases")["metadata"]["name"] == "steward-system-r-steward-agent"
    )
    assert one(docs, "RoleBinding", "steward-leases")["subjects"][0]["name"] == "host-agent"
    # address none: only the Hostname address (the node name)
    none = container(
        one(
            render(helm, "--set", "agent.enabled=true", "--set", "agent.address=none"), "DaemonSet"
        ),
        "agent",
    )
    assert not any(a.startswith("--address") for a in none["args"])
    assert set(env_of(none)) == {"NODE_NAME", "HOME"}


def test_agent_without_rbac_or_service_account(helm: Runner) -> None:
    docs = render(
        helm,
        *sets(
            "agent.enabled=true",
            "rbac.create=false",
            "agent.serviceAccount.create=false",
        ),
    )
    assert find(docs, "DaemonSet")
    assert not [d for d in agent_docs(docs) if d["kind"] != "DaemonSet"]
    assert pod_spec(one(docs, "DaemonSet"))["serviceAccountName"] == "default"


def test_agent_guard_renew_before_the_lease_runs_out(helm: Runner) -> None:
    out = helm(
        "template",
        "bad",
        CHART,
        *sets(
            "agent.enabled=true",
            "agent.leaseDurationSeconds=10",
            "agent.renewIntervalSeconds=10",
        ),
        check=False,
    )
    assert out.returncode != 0
    assert "agent.renewIntervalSeconds must be less than agent.leaseDurationSeconds" in out.stderr


def test_agent_pod_is_pod_security_restricted(
    helm: Runner, kubectl: Runner, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    manifest = helm(
        "template",
        "psa",
        CHART,
        "--namespace",
        namespace,
        "--set",
        "agent.enabled=true",
        "--set",
        "tenancy.sandbox.enabled=false",
        "--show-only",
        "templates/agent-daemonset.yaml",
    ).stdout
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    assert "PodSecurity" not in out.stderr, out.stderr
    assert "daemonset.apps/psa-steward-agent created (server dry run)" in out.stdout, out.stdout


def test_chart_version_and_crds_annotation_name_every_crd() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == "0.3.0"
    # (`helm show crds` joins the files without a `---`: read them one by one)
    names = {
        d["metadata"]["name"]
        for path in (CHART / "crds").glob("*.yaml")
        for d in yaml.safe_load_all(path.read_text())
        if d
    }
    assert "stewardnodes.steward.dev" in names
    annotated = {n.strip() for n in chart["annotations"]["steward.dev/crds"].split(",")}
    assert annotated == names


# ---------------------------------------------------------------- agent.serve: controller + agents
SERVE = ("agent.enabled=true", "agent.serve=true")


def shipped_rules(name: str) -> dict[str, set[Rule]]:
    """A deploy/NAME file's rules by kind (ClusterRole, Role)."""
    docs = [d for d in yaml.safe_load_all((paths.REPO / "deploy" / name).read_text()) if d]
    return {
        d["kind"]: expand_rules(d["rules"]) for d in docs if d["kind"] in ("ClusterRole", "Role")
    }


def rules_of(docs: list[dict[str, Any]], kind: str, name: str) -> set[Rule]:
    [doc] = [d for d in find(docs, kind) if d["metadata"]["name"] == name]
    return expand_rules(doc["rules"])


def test_serve_makes_the_deployment_a_controller_and_the_agents_the_runners(
    helm: Runner,
) -> None:
    """agent.serve: the Deployment runs `steward controller` in the restricted pod with
    deploy/controller-rbac.yaml's rules (no Secret); the DaemonSet runs `steward agent
    --serve` with the sandbox (root, only its capabilities), the workload flags and env
    `steward run` had, a state volume, the log endpoint, and deploy/agent-rbac.yaml +
    deploy/agent-serve-rbac.yaml's rules plus the same tenancy/Terraform extras."""
    docs = render(helm, *sets(*SERVE, "metrics.service.enabled=true"), release="r", namespace="sys")
    deploy = pod_spec(one(docs, "Deployment"))
    (ctl,) = deploy["containers"]
    args = build_parser().parse_args(ctl["args"])
    assert args.command == "controller" and args.lease_namespace == "kube-node-lease"
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert set(env_of(ctl)) == {"POD_ID", "HOME"}
    assert deploy["securityContext"] == pod_security(65532, fsGroup=65532)
    assert ctl["securityContext"] == container_security()
    assert [p["name"] for p in ctl["ports"]] == ["healthz"]

    shipped = shipped_rules("controller-rbac.yaml")
    controller = rules_of(docs, "ClusterRole", "sys-r-steward") | rules_of(
        docs, "ClusterRole", "sys-r-steward-nodes"
    )
    assert controller == shipped["ClusterRole"] - peering_rules(
        "clusterkopfpeerings", "steward-controller"
    ) - peering_rules("kopfpeerings", "steward-controller")
    assert rules_of(docs, "Role", "sys-r-steward-leases") == shipped["Role"]
    assert not any(r[1] == "secrets" for r in controller)

    ds = one(docs, "DaemonSet", "sys")
    pod = pod_spec(ds)
    (agent,) = pod["containers"]
    args = build_parser().parse_args(agent["args"])
    assert (args.command, args.serve, args.state_dir, args.log_port) == (
        "agent",
        True,
        "/var/lib/steward",
        10260,
    )
    assert (args.sandbox, args.enforce_policy, args.metrics_port) == (True, True, 9090)
    assert (args.daemon_workers, args.container_workers, args.terraform_workers) == (8, 8, 2)
    env = env_of(agent)
    assert env["STEWARD_SANDBOX_UIDS"] == "1879048192-65536"
    assert env["STEWARD_TERRAFORM_SERVICE_ACCOUNT"] == "steward-terraform"
    assert pod["securityContext"] == pod_security(0)
    assert agent["securityContext"] == container_security(*SANDBOX_CAPS)
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {
        "logs": 10260,
        "metrics": 9090,
        "healthz": 8080,
    }
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "state": "/var/lib/steward"}
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]

    register, serve = agent_rbac_rules(), shipped_rules("agent-serve-rbac.yaml")
    assert rules_of(docs, "ClusterRole", "sys-r-steward-agent") == register["ClusterRole"]
    assert rules_of(docs, "ClusterRole", "sys-r-steward-agent-serve") == (
        serve["ClusterRole"] | SECRETS_WRITE_RULES | NAMESPACE_RULES | POLICY_RULES | TOKEN_RULES
    )
    subject = [{"kind": "ServiceAccount", "name": "r-steward-agent", "namespace": "sys"}]
    [crb] = [
        d
        for d in find(docs, "ClusterRoleBinding")
        if d["metadata"]["name"] == "sys-r-steward-agent-serve"
    ]
    assert crb["subjects"] == subject
    # Metrics are the agents' now: the metrics Service selects them.
    selector = one(docs, "Service")["spec"]["selector"]
    assert selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_serve_namespaced_socket_and_host_path(helm: Runner) -> None:
    """With watchNamespaces the agents' and the controller's namespaced rules are Roles in
    those namespaces only; docker.mode=socket and the state hostPath go to the agents."""
    docs = render(
        helm,
        *sets(
            *SERVE,
            "watchNamespaces={a,b}",
            "docker.mode=socket",
            "agent.stateHostPath=/var/lib/steward-agent",
            "agent.logPort=0",
            "tenancy.sandbox.enabled=false",
        ),
        release="r",
        namespace="sys",
    )
    serve = shipped_rules("agent-serve-rbac.yaml")["ClusterRole"]
    reviews = {r for r in serve if r[0] in ("authentication.k8s.io", "authorization.k8s.io")}
    assert rules_of(docs, "ClusterRole", "sys-r-steward-agent-serve") == reviews | POLICY_RULES
    for ns in ("a", "b"):
        [role] = [d for d in find(docs, "Role", ns) if d["metadata"]["name"] == "r-steward-agent"]
        assert expand_rules(role["rules"]) == (
            serve - reviews | SECRETS_WRITE_RULES | NAMESPACE_RULES
        )
        [ctl_role] = [d for d in find(docs, "Role", ns) if d["metadata"]["name"] == "r-steward"]
        assert not any(r[1] == "secrets" for r in expand_rules(ctl_role["rules"]))
    pod = pod_spec(one(docs, "DaemonSet"))
    (agent,) = pod["containers"]
    args = build_parser().parse_args(agent["args"])
    assert args.namespace == ["a", "b"] and args.log_port == 0 and not args.sandbox
    assert env_of(agent)["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert "logs" not in {p["name"] for p in agent["ports"]}
    assert pod["securityContext"] == pod_security(65532)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"] == {
        "path": "/var/lib/steward-agent",
        "type": "DirectoryOrCreate",
    }
    assert volumes["docker-socket"]["hostPath"]["type"] == "Socket"
    deploy = pod_spec(one(docs, "Deployment"))
    assert "DOCKER_HOST" not in env_of(deploy["containers"][0])
    assert not any("hostPath" in v for v in deploy["volumes"])
    assert build_parser().parse_args(deploy["containers"][0]["args"]).namespace == ["a", "b"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["agent.serve=true"], "agent.serve needs agent.enabled"),
        ([*SERVE, "docker.mode=dind"], "agent.serve with docker.mode=dind"),
    ],
)
def test_serve_guards(helm: Runner, values: list[str], message: str) -> None:
    out = helm("template", "r", CHART, *sets(*values), check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr
