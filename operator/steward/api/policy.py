"""StewardPolicy: what the ManagedServices of the namespaces it selects may do (issue 14).

Cluster-scoped and admin-owned. Whoever can create a ManagedService in a
namespace gets no more power than a Pod there: everything that reaches past
the service's own sandbox (privileged containers, host paths, host network,
other namespaces' state, the operator's kubeconfig, orphaned workloads...) is
denied unless a policy allows it. A blocking daemon is denied whatever a policy
says: it would run in the operator's own process (the engine refuses it too,
policies or not; see :func:`steward.engine.policy.operator_refusals`).

Precedence: **every** policy whose ``namespaceSelector`` selects a namespace
applies, and a ManagedService there must satisfy all of them (the most
restrictive result). That is what a ValidatingAdmissionPolicy binding whose
``paramRef.selector`` matches every StewardPolicy does natively: each param is
evaluated on its own and any denial denies. The chart's default policy selects
the namespaces *without* the label ``steward.dev/policy``; label a namespace
``steward.dev/policy=<name>`` to take it out of the default and give it only
the policies that select it.

The rules themselves are one table, :data:`RULES`: each has an id, the field it
judges, its message and its CEL expression (the admission side, generated into
the ValidatingAdmissionPolicy by :mod:`steward.api.crd`). The same rules in
Python, for the engine's check before anything starts, are
:mod:`steward.engine.policy`, keyed by the same ids; the e2e test runs one table
of manifests through both and the real apiserver and compares the verdicts.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from steward.api.base import CamelModel, cel, lookup, name_and_labels
from steward.api.container import QUANTITY_PATTERN, ContainerSpec, parse_quantity
from steward.api.daemon import DaemonSpec, LogSpec
from steward.api.flavors import FLAVORS, NAMES
from steward.api.manifest import DNS1123_SUBDOMAIN
from steward.api.terraform import TerraformSpec

POLICY_KIND = "StewardPolicy"
POLICY_PLURAL = "stewardpolicies"
POLICY_SINGULAR = "stewardpolicy"
POLICY_SHORT_NAMES = ["stwpol"]
POLICY_LABEL = "steward.dev/policy"
"""Namespaces carrying this label are not selected by the chart's default policy."""

ENGINE_SOCKETS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
)
"""Container-engine sockets: whoever can use one is root on the host."""


def _ancestors(path: str) -> list[str]:
    out = []
    while path != "/":
        path = posixpath.dirname(path)
        out.append(path)
    return out


SENSITIVE_HOST_PATHS: tuple[str, ...] = tuple(
    sorted({p for s in ENGINE_SOCKETS for p in (s, *_ancestors(s))})
)
"""`/`, the engine sockets and every directory holding one: allowed as a hostPath only when a
policy lists that exact path (a prefix never covers them)."""

_LIST_MAX = 256
_ABS_PATH = r"^(/|(/[^/]+)+)\Z"
_FLAVOR = rf"^({'|'.join(NAMES)})\Z"


def _clean_abs(path: str, what: str, allow_dir_slash: bool = False) -> str:
    """A normalized absolute path (no `.`/`..` segments, no `//`, no trailing `/`)."""
    body = path[:-1] if allow_dir_slash and path.endswith("/") and path != "/" else path
    if not body.startswith("/") or (body != "/" and posixpath.normpath(body) != body):
        raise ValueError(f"{what}: {path!r} is not a normalized absolute path")
    return path


def _normalized_paths(field: str, what: str, allow_dir_slash: bool = False) -> Any:
    """A field validator: every path of the list ``field`` (None: none) passes ``_clean_abs``."""

    def check(cls: type, value: list[str] | None) -> list[str] | None:
        for p in value or []:
            _clean_abs(p, what, allow_dir_slash=allow_dir_slash)
        return value

    return field_validator(field)(check)


_AbsPath = Annotated[str, Field(max_length=4096, pattern=_ABS_PATH)]


class LabelSelectorRequirement(CamelModel):
    """One metav1 label-selector requirement."""

    model_config = cel(
        (
            "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : "
            "(!has(self.values) || size(self.values) == 0)",
            "matchExpressions: In and NotIn need values; Exists and DoesNotExist take none",
        ),
    )

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=_LIST_MAX, description="Values for In and NotIn."
    )

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError(
                "matchExpressions: In and NotIn need values; Exists and DoesNotExist take none"
            )
        return self


class LabelSelector(CamelModel):
    """A metav1 LabelSelector over namespace labels; `{}` selects every namespace."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels the namespace must carry with these values."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=_LIST_MAX, description="Requirements, all must hold."
    )


class DaemonPolicy(CamelModel):
    """What the daemon flavor may run."""

    commands: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        max_length=_LIST_MAX,
        description="Allowed `command[0]`: an absolute path, or a directory prefix ending in `/`. "
        "When set, command[0] must be a literal, normalized absolute path (no `$(...)`). "
        "Unset: any command.",
    )
    python_callables: list[Annotated[str, Field(max_length=512)]] | None = Field(
        default=None,
        max_length=_LIST_MAX,
        description="Allowed modules of `python.callable`: `pkg` allows `pkg:f` and `pkg.sub:f`. "
        "Unset: any callable.",
    )
    allow_singleton: bool = Field(default=False, description="Allow `singleton: true`.")

    _absolute = _normalized_paths("commands", "daemon.commands", allow_dir_slash=True)


class ContainerPolicy(CamelModel):
    """What the container flavor may do on the Docker host."""

    images: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(
        default=None,
        max_length=_LIST_MAX,
        description="Allowed images: an exact reference, or a prefix ending in `*` "
        "(`registry.local/team/*`, `busybox:*`). Unset: any image.",
    )
    allow_privileged: bool = Field(default=False, description="Allow `privileged: true`.")
    allowed_capabilities: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=64,
        description="`capAdd` must be a subset of these (with or without the CAP_ prefix).",
    )
    allow_host_network: bool = Field(default=False, description="Allow `networkMode: host`.")
    allow_root_user: bool = Field(
        default=False,
        description="Allow running as root. When false, `user` must be set with a numeric uid "
        "other than 0 (a name is resolved inside the image and could be root).",
    )
    host_path_prefixes: list[_AbsPath] = Field(
        default_factory=list,
        max_length=_LIST_MAX,
        description="Each `volumes[].hostPath` must be one of these or under one. `/`, the "
        "container-engine sockets and their directories only when listed exactly.",
    )

    _normalized = _normalized_paths("host_path_prefixes", "container.hostPathPrefixes")


class ModuleSources(CamelModel):
    """Where Terraform modules may come from."""

    inline: bool = Field(default=True, description="Allow `module.inline`.")
    path_prefixes: list[_AbsPath] = Field(
        default_factory=list,
        max_length=_LIST_MAX,
        description="`module.path` must be a normalized absolute path equal to or under one of "
        "these (it is read from the operator's file system). Empty: no path modules.",
    )

    _normalized = _normalized_paths("path_prefixes", "terraform.moduleSources.pathPrefixes")


class TerraformBackendPolicy(CamelModel):
    """What the Terraform state backend may point at."""

    allow_other_namespaces: bool = Field(
        default=False,
        description="Allow `backend.kubernetes.namespace` other than the resource's own.",
    )
    allow_config_path: bool = Field(
        default=False,
        description="Allow `backend.kubernetes.configPath` and `configContext` (a kubeconfig "
        "on the operator's host).",
    )
    allow_in_cluster_config: bool = Field(
        default=False, description="Allow setting `backend.kubernetes.inClusterConfig`."
    )


class TerraformPolicy(CamelModel):
    """What the terraform flavor may do."""

    module_sources: ModuleSources = Field(
        default_factory=ModuleSources, description="Allowed module sources."
    )
    binaries: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None,
        max_length=_LIST_MAX,
        description="Allowed `binary` values (auto, terraform, tofu, bundled) and exact "
        "`binaryPath`s. Unset: any `binary`, no `binaryPath`.",
    )
    backend: TerraformBackendPolicy = Field(
        default_factory=TerraformBackendPolicy, description="State backend limits."
    )
    allow_outputs_secret: bool = Field(
        default=False,
        description="Allow `writeOutputsToSecret` (the operator writes a Secret with its own "
        "credentials).",
    )


_Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY_PATTERN)]


class StewardPolicySpec(CamelModel):
    """Which namespaces a policy selects and what their ManagedServices may do.

    Every policy that selects a namespace applies (the most restrictive result).
    """

    namespace_selector: LabelSelector = Field(
        description="The namespaces this policy governs (`{}`: all of them)."
    )
    flavors: list[Annotated[str, Field(pattern=_FLAVOR)]] | None = Field(
        default=None,
        max_length=len(NAMES),
        description=f"Allowed flavors ({', '.join(NAMES)}). Unset: all.",
    )
    daemon: DaemonPolicy = Field(default_factory=DaemonPolicy, description="Daemon limits.")
    container: ContainerPolicy = Field(
        default_factory=ContainerPolicy, description="Container limits."
    )
    terraform: TerraformPolicy = Field(
        default_factory=TerraformPolicy, description="Terraform limits."
    )
    allow_orphan: bool = Field(default=False, description="Allow `deletionPolicy: Orphan`.")
    max_memory: _Quantity | None = Field(
        default=None,
        description="Ceiling on `resources.memory`; set, it also makes the memory limit required.",
    )
    max_cpu: _Quantity | None = Field(
        default=None,
        description="Ceiling on `resources.cpu`; set, it also makes the CPU limit required.",
    )
    max_pids: int | None = Field(
        default=None,
        ge=1,
        description="Ceiling on `resources.pids` (for flavors whose resources have one).",
    )
    max_stop_grace_period_seconds: float | None = Field(
        default=None, ge=0, description="Ceiling on `stopGracePeriodSeconds` (default included)."
    )
    max_timeout_seconds: float | None = Field(
        default=None,
        ge=1,
        description="Ceiling on `terraform.applyTimeoutSeconds` (default included).",
    )
    max_log_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Ceiling on a daemon's log disk use, `log.maxBytes * (log.backups + 1)` "
        "(defaults included; silent daemons log nothing).",
    )
    require_limits: bool = Field(
        default=False,
        description="Require `resources.cpu` and `resources.memory` on flavors that have them.",
    )

    @field_validator("max_memory", "max_cpu")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quantity(value)
        return value


class PolicyMeta(CamelModel):
    """Metadata of a cluster-scoped StewardPolicy (the part Steward reads)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN, description="Name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")


class StewardPolicy(CamelModel):
    """A StewardPolicy object as read from the cluster (unknown metadata is ignored)."""

    api_version: Literal["steward.dev/v1alpha1"] = Field(
        default="steward.dev/v1alpha1", description="steward.dev/v1alpha1"
    )
    kind: Literal["StewardPolicy"] = Field(default="StewardPolicy", description="StewardPolicy")
    metadata: PolicyMeta = Field(description="Standard object metadata.")
    spec: StewardPolicySpec = Field(description="What the selected namespaces may do.")

    @classmethod
    def parse(cls, data: object) -> StewardPolicy:
        if isinstance(data, StewardPolicy):
            return data
        if isinstance(data, dict):
            data = name_and_labels(data)
        return cls.model_validate(data)


# --------------------------------------------------------------------------- operator-mode refusals
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "steward"
OWNER_LABEL = "steward.dev/owner"
"""On a Secret Steward created for a ManagedService: that resource's uid (with an
ownerReference to it). `writeOutputsToSecret` writes and deletes only such Secrets."""
OUTPUTS_SECRET_RULE = "outputs-secret-not-owned"  # noqa: S105 - a rule id, not a secret


# --------------------------------------------------------------------------- the quickstart default
DEFAULT_POLICY_SPEC: dict[str, object] = {
    "namespaceSelector": {"matchExpressions": [{"key": POLICY_LABEL, "operator": "DoesNotExist"}]},
    "container": {"allowRootUser": True},
}
"""The chart's `policy.default` (and deploy/'s default policy): the model's secure defaults,
except that a container may run as the image's user (what a Pod without runAsNonRoot may do,
Pod Security `baseline`), so the quickstart examples work in namespace `default`."""


# --------------------------------------------------------------------------- the rule table
@dataclass(frozen=True)
class PolicyRule:
    """One admission rule: CEL on ``object`` (the ManagedService), ``variables.p`` (the
    policy's spec) and ``request``; true when the object complies."""

    id: str
    path: str
    """The ManagedService field it judges."""
    allowed_by: str
    """The policy field(s) that relax it."""
    message: str
    cel: str

    def __post_init__(self) -> None:
        if "'" in self.message or "{{" in self.message + self.cel or "\\" in self.message:
            raise ValueError(f"rule {self.id}: no quotes, braces pairs or backslashes")

    def full_message(self, policy_name: str) -> str:
        """The denial message, the same from CEL and from the engine."""
        return f"{self.id}: {self.message} (StewardPolicy {policy_name})"


BLOCKING_MESSAGE = (
    "blocking daemons never run under the operator: they would run in its own process"
)
"""Why `blocking: true` is refused in operator mode whatever the policies say."""

P = "variables.p"
S = "object.spec"


def _default(model: type[CamelModel], field: str) -> object:
    return model.model_fields[field].default


def _num(value: object) -> str:
    return repr(float(value))  # type: ignore[arg-type]


def _clean(x: str) -> str:
    """CEL: x is a normalized absolute path."""
    return (
        f"{x}.startsWith('/') && !{x}.contains('//') && ({x} == '/' || !{x}.endsWith('/')) "
        f"&& !{x}.split('/').exists(seg, seg == '.' || seg == '..')"
    )


def _under(x: str, prefixes: str) -> str:
    """CEL: x equals or is under one of prefixes."""
    return f"{prefixes}.exists(e, {x} == e || {x}.startsWith(e == '/' ? '/' : e + '/'))"


def _norm_cap(x: str) -> str:
    return f"({x}.startsWith('CAP_') ? {x}.substring(4) : {x})"


def resource_flavors(field: str) -> tuple[str, ...]:
    """Flavors whose spec has ``resources.<field>`` (read off the models, so a flavor gaining
    a `resources` field is covered once the CRD is regenerated)."""
    out = []
    for f in FLAVORS:
        res = f.model.model_fields.get("resources")
        if res is None:
            continue
        for model in (res.annotation, *get_args(res.annotation)):
            if isinstance(model, type) and field in getattr(model, "model_fields", {}):
                out.append(f.name)
                break
    return tuple(out)


def _ceiling_quantity(knob: str, field: str) -> str:
    parts = [
        f"(!has({S}.{fl}) || ({S}.{fl}.?resources.?{field}.hasValue() && "
        f"quantity({S}.{fl}.resources.{field}).compareTo(quantity({P}.{knob})) <= 0))"
        for fl in resource_flavors(field)
    ]
    return f"!{P}.?{knob}.hasValue() || ({' && '.join(parts) or 'true'})"


def _ceiling_int(knob: str, field: str) -> str:
    parts = [
        f"(!has({S}.{fl}) || ({S}.{fl}.?resources.?{field}.hasValue() && "
        f"{S}.{fl}.resources.{field} <= {P}.{knob}))"
        for fl in resource_flavors(field)
    ]
    return f"!{P}.?{knob}.hasValue() || ({' && '.join(parts) or 'true'})"


def _grace() -> str:
    parts = [
        f"(!has({S}.{f.field}) || double({S}.{f.field}.?stopGracePeriodSeconds.orValue("
        f"{_num(_default(f.model, 'stop_grace_period_seconds'))})) "
        f"<= double({P}.maxStopGracePeriodSeconds))"
        for f in FLAVORS
    ]
    return f"!{P}.?maxStopGracePeriodSeconds.hasValue() || ({' && '.join(parts)})"


def _limits() -> str:
    parts = [
        f"(!has({S}.{fl}) || ({S}.{fl}.?resources.?cpu.hasValue() && "
        f"{S}.{fl}.?resources.?memory.hasValue()))"
        for fl in sorted(set(resource_flavors("cpu")) | set(resource_flavors("memory")))
    ]
    return f"!{P}.?requireLimits.orValue(false) || ({' && '.join(parts) or 'true'})"


def _log_defaults() -> tuple[int, int]:
    log = LogSpec()
    return log.max_bytes, log.backups


_ARGV0 = f"{S}.daemon.command[0]"
_HOST = "v.hostPath"
_MPATH = f"{S}.terraform.module.path"
_KB = f"{S}.terraform.backend.kubernetes"


def _rules() -> tuple[PolicyRule, ...]:
    log_bytes, log_backups = _log_defaults()
    flavor = " : ".join(f"has({S}.{f.field}) ? '{f.name}'" for f in FLAVORS[:-1])
    flavor = f"({flavor} : '{FLAVORS[-1].name}')"
    sensitive = "[" + ", ".join(f"'{p}'" for p in SENSITIVE_HOST_PATHS) + "]"
    hp = f"{P}.?container.?hostPathPrefixes.orValue([])"
    caps = f"{P}.?container.?allowedCapabilities.orValue([])"
    return (
        PolicyRule(
            "flavor",
            "spec",
            "flavors",
            "the flavor is not in flavors",
            f"!{P}.?flavors.hasValue() || {flavor} in {P}.flavors",
        ),
        PolicyRule(
            "daemon-command",
            "spec.daemon.command[0]",
            "daemon.commands",
            "command[0] must be a literal absolute path allowed by daemon.commands",
            f"!has({S}.daemon) || !has({S}.daemon.command) || !{P}.?daemon.?commands.hasValue() "
            f"|| ({_clean(_ARGV0)} && !{_ARGV0}.contains('$') && {P}.daemon.commands.exists(c, "
            f"c.endsWith('/') ? {_ARGV0}.startsWith(c) : {_ARGV0} == c))",
        ),
        PolicyRule(
            "daemon-python-callable",
            "spec.daemon.python.callable",
            "daemon.pythonCallables",
            "python.callable is not in a module allowed by daemon.pythonCallables",
            f"!has({S}.daemon) || !has({S}.daemon.python) "
            f"|| !{P}.?daemon.?pythonCallables.hasValue() || {P}.daemon.pythonCallables.exists(m, "
            f"{S}.daemon.python.callable.split(':')[0] == m "
            f"|| {S}.daemon.python.callable.startsWith(m + '.'))",
        ),
        PolicyRule(
            "daemon-blocking",
            "spec.daemon.blocking",
            "(nothing)",
            BLOCKING_MESSAGE,
            f"!{S}.?daemon.?blocking.orValue(false)",
        ),
        PolicyRule(
            "daemon-singleton",
            "spec.daemon.singleton",
            "daemon.allowSingleton",
            "singleton daemons are not allowed (daemon.allowSingleton)",
            f"!{S}.?daemon.?singleton.orValue(false) || {P}.?daemon.?allowSingleton.orValue(false)",
        ),
        PolicyRule(
            "container-image",
            "spec.container.image",
            "container.images",
            "the image is not allowed by container.images",
            f"!has({S}.container) || !{P}.?container.?images.hasValue() "
            f"|| {P}.container.images.exists(i, i.endsWith('*') "
            f"? {S}.container.image.startsWith(i.substring(0, size(i) - 1)) "
            f": {S}.container.image == i)",
        ),
        PolicyRule(
            "container-privileged",
            "spec.container.privileged",
            "container.allowPrivileged",
            "privileged containers are not allowed (container.allowPrivileged)",
            f"!{S}.?container.?privileged.orValue(false) "
            f"|| {P}.?container.?allowPrivileged.orValue(false)",
        ),
        PolicyRule(
            "container-capabilities",
            "spec.container.capAdd",
            "container.allowedCapabilities",
            "capAdd must be a subset of container.allowedCapabilities",
            f"{S}.?container.?capAdd.orValue([]).all(c, {caps}.exists(a, "
            f"{_norm_cap('a')} == {_norm_cap('c')}))",
        ),
        PolicyRule(
            "container-host-network",
            "spec.container.networkMode",
            "container.allowHostNetwork",
            "networkMode host is not allowed (container.allowHostNetwork)",
            f"{S}.?container.?networkMode.orValue('bridge') != 'host' "
            f"|| {P}.?container.?allowHostNetwork.orValue(false)",
        ),
        PolicyRule(
            "container-root-user",
            "spec.container.user",
            "container.allowRootUser",
            "user must be a numeric uid other than 0 (container.allowRootUser)",
            f"!has({S}.container) || {P}.?container.?allowRootUser.orValue(false) "
            f"|| ({S}.container.?user.hasValue() "
            f"&& {S}.container.user.split(':')[0].matches('^[0-9]+$') "
            f"&& !{S}.container.user.split(':')[0].matches('^0+$'))",
        ),
        PolicyRule(
            "container-host-path",
            "spec.container.volumes[].hostPath",
            "container.hostPathPrefixes",
            "hostPath must be a normalized path under container.hostPathPrefixes "
            "(/ and engine sockets only when listed exactly)",
            f"{S}.?container.?volumes.orValue([]).all(v, {_clean(_HOST)} && ({_HOST} in {hp} "
            f"|| (!({_HOST} in {sensitive}) && {_under(_HOST, hp)})))",
        ),
        PolicyRule(
            "terraform-module-inline",
            "spec.terraform.module.inline",
            "terraform.moduleSources.inline",
            "inline modules are not allowed (terraform.moduleSources.inline)",
            f"!has({S}.terraform) || !has({S}.terraform.module.inline) "
            f"|| {P}.?terraform.?moduleSources.?inline.orValue(true)",
        ),
        PolicyRule(
            "terraform-module-path",
            "spec.terraform.module.path",
            "terraform.moduleSources.pathPrefixes",
            "module.path must be a normalized absolute path under "
            "terraform.moduleSources.pathPrefixes",
            f"!has({S}.terraform) || !has({S}.terraform.module.path) || ({_clean(_MPATH)} && "
            f"{_under(_MPATH, f'{P}.?terraform.?moduleSources.?pathPrefixes.orValue([])')})",
        ),
        PolicyRule(
            "terraform-binary",
            "spec.terraform.binary",
            "terraform.binaries",
            "binary and binaryPath must be listed in terraform.binaries",
            f"!has({S}.terraform) || (has({S}.terraform.binaryPath) "
            f"? {P}.?terraform.?binaries.orValue([]).exists(b, b == {S}.terraform.binaryPath) "
            f": (!{P}.?terraform.?binaries.hasValue() "
            f"|| {S}.terraform.?binary.orValue('auto') in {P}.terraform.binaries))",
        ),
        PolicyRule(
            "terraform-backend-namespace",
            "spec.terraform.backend.kubernetes.namespace",
            "terraform.backend.allowOtherNamespaces",
            "the kubernetes backend namespace must be the namespace of the ManagedService",
            f"{S}.?terraform.?backend.?kubernetes.?namespace.orValue(request.namespace) "
            f"== request.namespace "
            f"|| {P}.?terraform.?backend.?allowOtherNamespaces.orValue(false)",
        ),
        PolicyRule(
            "terraform-backend-config-path",
            "spec.terraform.backend.kubernetes.configPath",
            "terraform.backend.allowConfigPath",
            "configPath and configContext are not allowed (terraform.backend.allowConfigPath)",
            f"!({S}.?terraform.?backend.?kubernetes.?configPath.hasValue() "
            f"|| {S}.?terraform.?backend.?kubernetes.?configContext.hasValue()) "
            f"|| {P}.?terraform.?backend.?allowConfigPath.orValue(false)",
        ),
        PolicyRule(
            "terraform-backend-in-cluster",
            "spec.terraform.backend.kubernetes.inClusterConfig",
            "terraform.backend.allowInClusterConfig",
            "inClusterConfig is not allowed (terraform.backend.allowInClusterConfig)",
            f"!{S}.?terraform.?backend.?kubernetes.?inClusterConfig.hasValue() "
            f"|| {P}.?terraform.?backend.?allowInClusterConfig.orValue(false)",
        ),
        PolicyRule(
            "terraform-outputs-secret",
            "spec.terraform.writeOutputsToSecret",
            "terraform.allowOutputsSecret",
            "writeOutputsToSecret is not allowed (terraform.allowOutputsSecret)",
            f"!{S}.?terraform.?writeOutputsToSecret.hasValue() "
            f"|| {P}.?terraform.?allowOutputsSecret.orValue(false)",
        ),
        PolicyRule(
            "deletion-orphan",
            "spec.deletionPolicy",
            "allowOrphan",
            "deletionPolicy Orphan is not allowed (allowOrphan)",
            f"{S}.?deletionPolicy.orValue('Delete') != 'Orphan' || {P}.?allowOrphan.orValue(false)",
        ),
        PolicyRule(
            "require-limits",
            "spec.*.resources",
            "requireLimits",
            "resources.cpu and resources.memory must be set (requireLimits)",
            _limits(),
        ),
        PolicyRule(
            "max-memory",
            "spec.*.resources.memory",
            "maxMemory",
            "resources.memory must be set and at most maxMemory",
            _ceiling_quantity("maxMemory", "memory"),
        ),
        PolicyRule(
            "max-cpu",
            "spec.*.resources.cpu",
            "maxCpu",
            "resources.cpu must be set and at most maxCpu",
            _ceiling_quantity("maxCpu", "cpu"),
        ),
        PolicyRule(
            "max-pids",
            "spec.*.resources.pids",
            "maxPids",
            "resources.pids must be set and at most maxPids",
            _ceiling_int("maxPids", "pids"),
        ),
        PolicyRule(
            "max-stop-grace-period",
            "spec.*.stopGracePeriodSeconds",
            "maxStopGracePeriodSeconds",
            "stopGracePeriodSeconds (default included) is above maxStopGracePeriodSeconds",
            _grace(),
        ),
        PolicyRule(
            "max-timeout",
            "spec.terraform.applyTimeoutSeconds",
            "maxTimeoutSeconds",
            "applyTimeoutSeconds (default included) is above maxTimeoutSeconds",
            f"!{P}.?maxTimeoutSeconds.hasValue() || double({S}.?terraform.?applyTimeoutSeconds"
            f".orValue({_num(_default(TerraformSpec, 'apply_timeout_seconds'))})) "
            f"<= double({P}.maxTimeoutSeconds)",
        ),
        PolicyRule(
            "max-log-bytes",
            "spec.daemon.log",
            "maxLogBytes",
            "log.maxBytes * (log.backups + 1) (defaults included) is above maxLogBytes",
            f"!{P}.?maxLogBytes.hasValue() || !has({S}.daemon) "
            f"|| {S}.daemon.?silent.orValue(false) "
            f"|| {S}.daemon.?log.?maxBytes.orValue({log_bytes}) "
            f"* ({S}.daemon.?log.?backups.orValue({log_backups}) + 1) <= {P}.maxLogBytes",
        ),
    )


RULES: tuple[PolicyRule, ...] = _rules()
RULE_IDS: tuple[str, ...] = tuple(r.id for r in RULES)


def rule(rule_id: str) -> PolicyRule:
    """The rule with this id; KeyError lists the known ones."""
    return lookup(RULES, lambda r: r.id, rule_id, "policy rule")


def _check_models() -> None:
    """The rules name fields that exist (a renamed field must fail here, not silently pass)."""
    for model, fields in (
        (DaemonSpec, ("command", "python", "blocking", "singleton", "log", "silent")),
        (ContainerSpec, ("image", "privileged", "cap_add", "network_mode", "user", "volumes")),
        (TerraformSpec, ("module", "binary", "binary_path", "backend", "write_outputs_to_secret")),
    ):
        for name in (*fields, "stop_grace_period_seconds"):
            if name not in model.model_fields:
                raise TypeError(f"policy rules read {model.__name__}.{name}, which is gone")


_check_models()
