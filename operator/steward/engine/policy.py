"""StewardPolicy evaluation, pure: which policies apply to a namespace and what they deny.

The same rules as the admission policy's CEL (``steward.api.policy.RULES``, one
check here per rule id, asserted at import), so the engine can refuse to start
what admission should have refused: an object created before the policy, or
under a policy since tightened, or in local mode fed a policy file.

Precedence: every policy that selects the namespace applies; a ManagedService
must satisfy all of them (see ``steward.api.policy``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from steward.api.container import parse_quantity
from steward.api.flavors import FLAVORS
from steward.api.manifest import ManagedService
from steward.api.policy import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OUTPUTS_SECRET_RULE,
    OWNER_LABEL,
    RULE_IDS,
    RULES,
    SENSITIVE_HOST_PATHS,
    LabelSelector,
    StewardPolicy,
    StewardPolicySpec,
    resource_flavors,
    rule,
)
from steward.api.spec import DeletionPolicy
from steward.api.terraform import KubernetesBackend


@dataclass(frozen=True)
class Violation:
    """One rule a ManagedService breaks under one policy."""

    rule: str
    """The rule id (``container-privileged``...)."""
    path: str
    """The offending field of the ManagedService."""
    message: str
    """``<rule>: <what is wrong> (StewardPolicy <name>)``, as admission says it."""
    policy: str
    """The policy's name."""


Check = Callable[[StewardPolicySpec, ManagedService], list[str]]
"""A rule in Python: the offending field paths (empty when the object complies)."""


# --------------------------------------------------------------------------- selection
def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1 LabelSelector semantics; the empty selector matches everything."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def select(
    policies: Iterable[StewardPolicy | Mapping[str, Any]], namespace_labels: Mapping[str, str]
) -> list[StewardPolicy]:
    """Every policy selecting a namespace with these labels, by name: all of them apply."""
    parsed = [StewardPolicy.parse(p) for p in policies]
    chosen = [p for p in parsed if selector_matches(p.spec.namespace_selector, namespace_labels)]
    return sorted(chosen, key=lambda p: p.metadata.name)


# --------------------------------------------------------------------------- helpers
def _clean(path: str) -> bool:
    """A normalized absolute path, as the CEL's `_clean` checks it."""
    return (
        path.startswith("/")
        and "//" not in path
        and (path == "/" or not path.endswith("/"))
        and not any(seg in (".", "..") for seg in path.split("/"))
    )


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == e or path.startswith("/" if e == "/" else e + "/") for e in prefixes)


def _cap(name: str) -> str:
    return name[4:] if name.startswith("CAP_") else name


_ABSENT = object()


def _resources(ms: ManagedService, flavor: str) -> Any:
    """The flavor's resources (None: unset, so unlimited), or _ABSENT for another flavor."""
    sub = getattr(ms.spec, flavor)
    return _ABSENT if sub is None else sub.resources


# --------------------------------------------------------------------------- the checks
def _flavor(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    return [] if p.flavors is None or ms.spec.flavor in p.flavors else ["spec"]


def _daemon_command(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    d, allowed = ms.spec.daemon, p.daemon.commands
    if d is None or d.command is None or allowed is None:
        return []
    argv0 = d.command[0]
    ok = (
        _clean(argv0)
        and "$" not in argv0
        and any(argv0.startswith(c) if c.endswith("/") else argv0 == c for c in allowed)
    )
    return [] if ok else ["spec.daemon.command[0]"]


def _daemon_python(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    d, allowed = ms.spec.daemon, p.daemon.python_callables
    if d is None or d.python is None or allowed is None:
        return []
    target = d.python.callable
    module = target.split(":")[0]
    ok = any(module == m or target.startswith(m + ".") for m in allowed)
    return [] if ok else ["spec.daemon.python.callable"]


def _daemon_blocking(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    d = ms.spec.daemon
    return ["spec.daemon.blocking"] if d and d.blocking else []  # no policy allows it


def _daemon_singleton(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    d = ms.spec.daemon
    bad = d is not None and d.singleton and not p.daemon.allow_singleton
    return ["spec.daemon.singleton"] if bad else []


def _container_image(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c, allowed = ms.spec.container, p.container.images
    if c is None or allowed is None:
        return []
    ok = any(c.image.startswith(i[:-1]) if i.endswith("*") else c.image == i for i in allowed)
    return [] if ok else ["spec.container.image"]


def _container_privileged(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c = ms.spec.container
    bad = c is not None and c.privileged and not p.container.allow_privileged
    return ["spec.container.privileged"] if bad else []


def _container_caps(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c = ms.spec.container
    if c is None:
        return []
    allowed = {_cap(a) for a in p.container.allowed_capabilities}
    return [
        f"spec.container.capAdd[{i}]" for i, x in enumerate(c.cap_add) if _cap(x) not in allowed
    ]


def _container_host_network(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c = ms.spec.container
    bad = c is not None and c.network_mode == "host" and not p.container.allow_host_network
    return ["spec.container.networkMode"] if bad else []


def _container_root(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c = ms.spec.container
    if c is None or p.container.allow_root_user:
        return []
    uid = (c.user or "").split(":")[0]
    ok = c.user is not None and re.fullmatch(r"[0-9]+", uid) is not None and uid.strip("0") != ""
    return [] if ok else ["spec.container.user"]


def _container_host_path(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    c = ms.spec.container
    if c is None:
        return []
    allowed = p.container.host_path_prefixes
    out = []
    for i, v in enumerate(c.volumes):
        h = v.host_path
        ok = _clean(h) and (h in allowed or (h not in SENSITIVE_HOST_PATHS and _under(h, allowed)))
        if not ok:
            out.append(f"spec.container.volumes[{i}].hostPath")
    return out


def _tf_inline(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    t = ms.spec.terraform
    bad = t is not None and t.module.inline is not None and not p.terraform.module_sources.inline
    return ["spec.terraform.module.inline"] if bad else []


def _tf_path(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    t = ms.spec.terraform
    if t is None or t.module.path is None:
        return []
    path = t.module.path
    ok = _clean(path) and _under(path, p.terraform.module_sources.path_prefixes)
    return [] if ok else ["spec.terraform.module.path"]


def _tf_binary(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    t, allowed = ms.spec.terraform, p.terraform.binaries
    if t is None:
        return []
    if t.binary_path is not None:
        return (
            []
            if allowed is not None and t.binary_path in allowed
            else ["spec.terraform.binaryPath"]
        )
    return [] if allowed is None or t.binary.value in allowed else ["spec.terraform.binary"]


def _kubernetes_backend(ms: ManagedService) -> KubernetesBackend | None:
    t = ms.spec.terraform
    return None if t is None else t.backend.kubernetes


def _tf_backend_ns(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    kb = _kubernetes_backend(ms)
    bad = (
        kb is not None
        and kb.namespace is not None
        and kb.namespace != ms.metadata.namespace
        and not p.terraform.backend.allow_other_namespaces
    )
    return ["spec.terraform.backend.kubernetes.namespace"] if bad else []


def _tf_backend_config(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    kb = _kubernetes_backend(ms)
    if kb is None or p.terraform.backend.allow_config_path:
        return []
    return [
        f"spec.terraform.backend.kubernetes.{name}"
        for name, value in (("configPath", kb.config_path), ("configContext", kb.config_context))
        if value is not None
    ]


def _tf_backend_in_cluster(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    kb = _kubernetes_backend(ms)
    bad = (
        kb is not None
        and kb.in_cluster_config is not None
        and not p.terraform.backend.allow_in_cluster_config
    )
    return ["spec.terraform.backend.kubernetes.inClusterConfig"] if bad else []


def _tf_outputs(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    t = ms.spec.terraform
    bad = t is not None and t.write_outputs_to_secret is not None
    return (
        ["spec.terraform.writeOutputsToSecret"]
        if bad and not p.terraform.allow_outputs_secret
        else []
    )


def _orphan(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    bad = ms.spec.deletion_policy == DeletionPolicy.ORPHAN and not p.allow_orphan
    return ["spec.deletionPolicy"] if bad else []


def _require_limits(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    if not p.require_limits:
        return []
    out = []
    for flavor in sorted(set(resource_flavors("cpu")) | set(resource_flavors("memory"))):
        res = _resources(ms, flavor)
        if res is not _ABSENT and (
            getattr(res, "cpu", None) is None or getattr(res, "memory", None) is None
        ):
            out.append(f"spec.{flavor}.resources")
    return out


def _ceiling(field: str, knob: str, parse: Callable[[Any], Decimal]) -> Check:
    def check(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
        limit = getattr(p, knob)
        if limit is None:
            return []
        out = []
        for flavor in resource_flavors(field):
            res = _resources(ms, flavor)
            if res is _ABSENT:
                continue
            value = getattr(res, field, None)
            if value is None or parse(value) > parse(limit):
                out.append(f"spec.{flavor}.resources.{field}")
        return out

    return check


def _grace(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    limit = p.max_stop_grace_period_seconds
    if limit is None:
        return []
    out = []
    for f in FLAVORS:
        sub = getattr(ms.spec, f.field)
        if sub is not None and sub.stop_grace_period_seconds > limit:
            out.append(f"spec.{f.field}.stopGracePeriodSeconds")
    return out


def _timeout(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    t, limit = ms.spec.terraform, p.max_timeout_seconds
    bad = t is not None and limit is not None and t.apply_timeout_seconds > limit
    return ["spec.terraform.applyTimeoutSeconds"] if bad else []


def _log_bytes(p: StewardPolicySpec, ms: ManagedService) -> list[str]:
    d, limit = ms.spec.daemon, p.max_log_bytes
    if d is None or limit is None or d.silent:
        return []
    return ["spec.daemon.log"] if d.log.max_bytes * (d.log.backups + 1) > limit else []


CHECKS: dict[str, Check] = {
    "flavor": _flavor,
    "daemon-command": _daemon_command,
    "daemon-python-callable": _daemon_python,
    "daemon-blocking": _daemon_blocking,
    "daemon-singleton": _daemon_singleton,
    "container-image": _container_image,
    "container-privileged": _container_privileged,
    "container-capabilities": _container_caps,
    "container-host-network": _container_host_network,
    "container-root-user": _container_root,
    "container-host-path": _container_host_path,
    "terraform-module-inline": _tf_inline,
    "terraform-module-path": _tf_path,
    "terraform-binary": _tf_binary,
    "terraform-backend-namespace": _tf_backend_ns,
    "terraform-backend-config-path": _tf_backend_config,
    "terraform-backend-in-cluster": _tf_backend_in_cluster,
    "terraform-outputs-secret": _tf_outputs,
    "deletion-orphan": _orphan,
    "require-limits": _require_limits,
    "max-memory": _ceiling("memory", "max_memory", lambda v: parse_quantity(str(v))),
    "max-cpu": _ceiling("cpu", "max_cpu", lambda v: parse_quantity(str(v))),
    "max-pids": _ceiling("pids", "max_pids", lambda v: Decimal(int(v))),
    "max-stop-grace-period": _grace,
    "max-timeout": _timeout,
    "max-log-bytes": _log_bytes,
}

if tuple(CHECKS) != RULE_IDS:  # one table: every CEL rule has its Python twin, in order
    raise TypeError(f"engine checks {tuple(CHECKS)} differ from the rules {RULE_IDS}")


# --------------------------------------------------------------------------- evaluation
def evaluate(
    policy: StewardPolicy | StewardPolicySpec | Mapping[str, Any],
    manifest: ManagedService | Mapping[str, Any] | str,
    *,
    policy_name: str | None = None,
) -> list[Violation]:
    """What one policy denies of one ManagedService, in rule order (empty: allowed)."""
    if isinstance(policy, StewardPolicySpec):
        spec, name = policy, policy_name or "(unnamed)"
    else:
        obj = StewardPolicy.parse(policy)
        spec, name = obj.spec, policy_name or obj.metadata.name
    ms = ManagedService.parse(
        manifest if isinstance(manifest, ManagedService | str) else dict(manifest)
    )
    out = []
    for r in RULES:
        for path in CHECKS[r.id](spec, ms):
            out.append(Violation(rule=r.id, path=path, message=r.full_message(name), policy=name))
    return out


def check(
    policies: Iterable[StewardPolicy | Mapping[str, Any]],
    namespace_labels: Mapping[str, str],
    manifest: ManagedService | Mapping[str, Any] | str,
) -> list[Violation]:
    """Every violation under every policy that selects the namespace (empty: allowed).

    No policy selecting the namespace allows everything, as admission does; an
    adapter that wants to fail closed there checks ``select(...)`` itself.
    """
    ms = ManagedService.parse(
        manifest if isinstance(manifest, ManagedService | str) else dict(manifest)
    )
    return [v for p in select(policies, namespace_labels) for v in evaluate(p, ms)]


# --------------------------------------------------------------------------- operator mode
def operator_refusals(manifest: ManagedService) -> list[str]:
    """What the operator refuses to start whatever the policies say (with or without
    ``--enforce-policy``): a blocking daemon would run tenant code in its own process."""
    if _daemon_blocking(StewardPolicySpec(namespace_selector=LabelSelector()), manifest):
        r = rule("daemon-blocking")
        return [f"{r.id}: {r.message} (operator mode)"]
    return []


def owns_secret(labels: Mapping[str, str], owner_uids: Iterable[str], uid: str) -> bool:
    """Steward created this Secret for the resource ``uid``: labelled by Steward and with an
    ownerReference to that uid (the owner label, which earlier versions did not set, must
    name the same uid when present)."""
    return (
        bool(uid)
        and labels.get(MANAGED_BY_LABEL) == MANAGED_BY
        and labels.get(OWNER_LABEL, uid) == uid
        and uid in set(owner_uids)
    )


def outputs_secret_refusal(
    name: str, labels: Mapping[str, str] | None, owner_uids: Iterable[str], uid: str
) -> str | None:
    """Why the outputs Secret ``name`` must not be written (None: absent or Steward's own).

    ``labels`` None means no such Secret. Anyone else's Secret, another ManagedService's
    included, is never overwritten with the operator's credentials.
    """
    if labels is None or owns_secret(labels, owner_uids, uid):
        return None
    return (
        f"{OUTPUTS_SECRET_RULE}: Secret {name} exists and Steward did not create it for "
        "this ManagedService (writeOutputsToSecret writes only Secrets it owns; "
        "choose another name)"
    )
