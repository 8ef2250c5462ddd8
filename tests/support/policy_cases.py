"""One table of ManagedServices under two StewardPolicies, with the rule each must break.

Run through ``steward.engine.policy`` by tests/unit/test_policy.py and through the
real apiserver's ValidatingAdmissionPolicy by tests/e2e/test_admission_policy.py:
the Python and the CEL must give the same verdicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from steward.api.policy import resource_flavors

STRICT_LABEL = "strict"
RELAXED_LABEL = "relaxed"
OWN_NS = "$NS"
"""Replaced by the ManagedService's namespace."""

STRICT: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"steward.dev/policy": STRICT_LABEL}},
    "flavors": ["daemon", "container"],
    "daemon": {
        "commands": ["/usr/bin/", "/opt/app/run"],
        "pythonCallables": ["steward.examples_app"],
    },
    "container": {
        "images": ["busybox:*", "registry.local/team/*"],
        "allowedCapabilities": ["NET_BIND_SERVICE"],
    },
    "maxMemory": "128Mi",
    "maxCpu": "1",
    "maxStopGracePeriodSeconds": 30,
    "maxLogBytes": 64 * 1024 * 1024,
}

RELAXED: dict[str, Any] = {
    "namespaceSelector": {
        "matchExpressions": [
            {"key": "steward.dev/policy", "operator": "In", "values": [RELAXED_LABEL]}
        ]
    },
    "daemon": {"allowSingleton": True},
    "container": {
        "allowPrivileged": True,
        "allowedCapabilities": ["CAP_NET_ADMIN"],
        "allowHostNetwork": True,
        "allowRootUser": True,
        "hostPathPrefixes": ["/srv", "/var", "/var/run/docker.sock"],
    },
    "terraform": {
        "moduleSources": {"inline": True, "pathPrefixes": ["/opt/modules"]},
        "binaries": ["auto", "bundled", "/usr/local/bin/tofu"],
        "backend": {"allowInClusterConfig": True},
    },
    "allowOrphan": True,
    "maxTimeoutSeconds": 3600,
    "requireLimits": True,
}

LIMITS = {"cpu": "500m", "memory": "64Mi"}
TF_MAIN = {"main.tf": 'output "url" { value = "http://example.internal" }\n'}


DAEMON_LIMITS: dict[str, Any] = (
    {"resources": {"cpu": "500m", "memory": "64Mi"}}
    if "daemon" in resource_flavors("memory")
    else {}
)
"""Daemons have limits once DaemonSpec has `resources` (the rules follow the models)."""


def daemon(**kw: Any) -> dict[str, Any]:
    return {"daemon": {"command": ["/usr/bin/python3", "-m", "http.server"], **DAEMON_LIMITS, **kw}}


def python(callable_: str) -> dict[str, Any]:
    return {"daemon": {"python": {"callable": callable_}, **DAEMON_LIMITS}}


def box(**kw: Any) -> dict[str, Any]:
    return {"container": {"image": "busybox:1.36", "user": "1000", "resources": LIMITS, **kw}}


def mount(host_path: str, at: str) -> dict[str, Any]:
    """A container mounting HOST_PATH at AT."""
    return box(volumes=[{"hostPath": host_path, "mountPath": at}])


def tf(**kw: Any) -> dict[str, Any]:
    return {"terraform": {"module": {"inline": TF_MAIN}, **kw}}


def k8s_backend(**kw: Any) -> dict[str, Any]:
    return {"kubernetes": kw}


@dataclass(frozen=True)
class Case:
    name: str
    policy: str
    """STRICT_LABEL or RELAXED_LABEL: the namespace's steward.dev/policy label."""
    spec: dict[str, Any]
    denied_by: str | None
    """The first rule broken (None: allowed)."""

    def manifest(self, namespace: str) -> dict[str, Any]:
        spec = copy.deepcopy(self.spec)
        backend = spec.get("terraform", {}).get("backend", {}).get("kubernetes", {})
        if backend.get("namespace") == OWN_NS:
            backend["namespace"] = namespace
        return {
            "apiVersion": "steward.dev/v1alpha1",
            "kind": "ManagedService",
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": spec,
        }


S, R = STRICT_LABEL, RELAXED_LABEL
CASES: tuple[Case, ...] = (
    # ------------------------------------------------------------ strict: daemon
    Case("d-allowed-prefix", S, daemon(), None),
    Case("d-allowed-exact", S, daemon(command=["/opt/app/run"]), None),
    Case("d-relative", S, daemon(command=["python3", "-V"]), "daemon-command"),
    Case("d-outside", S, daemon(command=["/tmp/evil"]), "daemon-command"),
    Case("d-exact-only", S, daemon(command=["/opt/app/run2"]), "daemon-command"),
    Case("d-dotdot", S, daemon(command=["/usr/bin/../../tmp/x"]), "daemon-command"),
    Case("d-var", S, daemon(command=["/usr/bin/$(X)"]), "daemon-command"),
    Case("d-python-ok", S, python("steward.examples_app:serve"), None),
    Case("d-python-no", S, python("os:system"), "daemon-python-callable"),
    Case("d-python-lookalike", S, python("steward.examples_apps:serve"), "daemon-python-callable"),
    Case("d-blocking", S, daemon(blocking=True), "daemon-blocking"),
    Case("d-singleton", S, daemon(singleton=True), "daemon-singleton"),
    Case("d-grace", S, daemon(stopGracePeriodSeconds=60), "max-stop-grace-period"),
    Case("d-logs", S, daemon(log={"maxBytes": 64 * 1024 * 1024, "backups": 3}), "max-log-bytes"),
    Case("d-logs-silent", S, daemon(silent=True, log={"maxBytes": 1 << 30}), None),
    Case("d-orphan", S, {**daemon(), "deletionPolicy": "Orphan"}, "deletion-orphan"),
    # ------------------------------------------------------------ strict: container
    Case("c-allowed", S, box(), None),
    Case("c-uid-gid0", S, box(user="1000:0"), None),
    Case("c-registry", S, box(image="registry.local/team/app:1"), None),
    Case("c-image", S, box(image="nginx:1.27"), "container-image"),
    Case("c-privileged", S, box(privileged=True), "container-privileged"),
    Case("c-cap", S, box(capAdd=["NET_ADMIN"]), "container-capabilities"),
    Case("c-cap-prefixed", S, box(capAdd=["CAP_NET_BIND_SERVICE"]), None),
    Case("c-host-network", S, box(networkMode="host"), "container-host-network"),
    Case("c-user-0", S, box(user="0"), "container-root-user"),
    Case("c-user-root", S, box(user="root"), "container-root-user"),
    Case("c-user-00", S, box(user="00:1000"), "container-root-user"),
    Case(
        "c-user-unset",
        S,
        {"container": {"image": "busybox:1.36", "resources": LIMITS}},
        "container-root-user",
    ),
    Case("c-hostpath-root", S, mount("/", "/h"), "container-host-path"),
    Case("c-docker-sock", S, mount("/var/run/docker.sock", "/s"), "container-host-path"),
    Case("c-memory", S, box(resources={"cpu": "500m", "memory": "256Mi"}), "max-memory"),
    Case("c-memory-unset", S, box(resources={"cpu": "500m"}), "max-memory"),
    Case("c-memory-equal", S, box(resources={"cpu": "1", "memory": "128Mi"}), None),
    Case("c-cpu", S, box(resources={"cpu": "1500m", "memory": "64Mi"}), "max-cpu"),
    Case("c-grace-default", S, box(stopGracePeriodSeconds=30), None),
    Case("t-flavor", S, tf(), "flavor"),
    # ------------------------------------------------------------ relaxed
    Case(
        "r-container-everything",
        R,
        box(
            user="0",
            privileged=True,
            capAdd=["NET_ADMIN"],
            networkMode="host",
            volumes=[
                {"hostPath": "/srv/data", "mountPath": "/data"},
                {"hostPath": "/var/lib/x", "mountPath": "/x"},
                {"hostPath": "/var/run/docker.sock", "mountPath": "/s"},
            ],
        ),
        None,
    ),
    Case("r-cap-other", R, box(capAdd=["SYS_ADMIN"]), "container-capabilities"),
    Case("r-var-run", R, mount("/var/run", "/r"), "container-host-path"),
    Case("r-hostpath-dotdot", R, mount("/srv/../etc", "/e"), "container-host-path"),
    Case("r-hostpath-slash", R, mount("/srv/", "/e"), "container-host-path"),
    Case("r-hostpath-outside", R, mount("/etc", "/e"), "container-host-path"),
    Case("r-hostpath-lookalike", R, mount("/srvx", "/e"), "container-host-path"),
    Case("r-no-limits", R, {"container": {"image": "busybox:1.36"}}, "require-limits"),
    Case("r-singleton", R, daemon(singleton=True), None),
    Case("r-blocking", R, daemon(blocking=True), "daemon-blocking"),  # no policy allows it
    Case("r-orphan", R, {**daemon(), "deletionPolicy": "Orphan"}, None),
    Case("r-tf-inline", R, tf(), None),
    Case("r-tf-own-ns", R, tf(backend=k8s_backend(namespace=OWN_NS, inClusterConfig=True)), None),
    Case(
        "r-tf-other-ns",
        R,
        tf(backend=k8s_backend(namespace="kube-system")),
        "terraform-backend-namespace",
    ),
    Case(
        "r-tf-config-path",
        R,
        tf(backend=k8s_backend(configPath="/root/.kube/config")),
        "terraform-backend-config-path",
    ),
    Case(
        "r-tf-config-context",
        R,
        tf(backend=k8s_backend(configContext="admin")),
        "terraform-backend-config-path",
    ),
    Case("r-tf-path-ok", R, {"terraform": {"module": {"path": "/opt/modules/web"}}}, None),
    Case(
        "r-tf-path-out", R, {"terraform": {"module": {"path": "/etc/m"}}}, "terraform-module-path"
    ),
    Case(
        "r-tf-path-rel",
        R,
        {"terraform": {"module": {"path": "modules/web"}}},
        "terraform-module-path",
    ),
    Case("r-tf-binary-path", R, tf(binaryPath="/usr/local/bin/tofu"), None),
    Case("r-tf-binary-path-no", R, tf(binaryPath="/tmp/terraform"), "terraform-binary"),
    Case("r-tf-binary-no", R, tf(binary="terraform"), "terraform-binary"),
    Case("r-tf-bundled", R, tf(binary="bundled"), None),
    Case("r-tf-outputs", R, tf(writeOutputsToSecret={"name": "out"}), "terraform-outputs-secret"),
    Case("r-tf-timeout", R, tf(applyTimeoutSeconds=7200), "max-timeout"),
)

if DAEMON_LIMITS:
    CASES += (
        Case("d-memory", S, daemon(resources={"cpu": "500m", "memory": "256Mi"}), "max-memory"),
        Case("d-no-limits", S, {"daemon": {"command": ["/usr/bin/true"]}}, "max-memory"),
        Case("r-d-no-limits", R, {"daemon": {"command": ["/usr/bin/true"]}}, "require-limits"),
    )
