"""StewardPolicy evaluation (steward.engine.policy): every rule, allowed and denied.

The main table (tests/support/policy_cases.py) is shared with the e2e test, which runs it
through the real apiserver's ValidatingAdmissionPolicy as well.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from steward.api.manifest import ManagedService
from steward.api.policy import (
    RULE_IDS,
    RULES,
    StewardPolicy,
    StewardPolicySpec,
    resource_flavors,
    rule,
)
from steward.engine.policy import (
    CHECKS,
    check,
    evaluate,
    operator_refusals,
    outputs_secret_refusal,
    owns_secret,
    select,
    selector_matches,
)
from tests.support.manifests import policy
from tests.support.policy_cases import (
    CASES,
    DAEMON_LIMITS,
    RELAXED,
    RELAXED_LABEL,
    STRICT,
    STRICT_LABEL,
    Case,
    box,
    daemon,
    k8s_backend,
    tf,
)

NS = "team-a"
POLICIES = {STRICT_LABEL: STRICT, RELAXED_LABEL: RELAXED}


def first_rule(spec: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    found = evaluate(policy("p", spec), manifest)
    return found[0].rule if found else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_shared_table(case: Case) -> None:
    assert first_rule(POLICIES[case.policy], case.manifest(NS)) == case.denied_by


EVERYWHERE: dict[str, Any] = {"namespaceSelector": {}}

# (name, policy spec, ManagedService spec, first rule broken or None): what the shared table
# cannot reach with its two policies, and the secure defaults of an otherwise empty policy.
EXTRA: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("defaults-daemon", EVERYWHERE, daemon(), None),
    ("defaults-relative-command", EVERYWHERE, {"daemon": {"command": ["python3"]}}, None),
    (
        "defaults-container-no-user",
        EVERYWHERE,
        {"container": {"image": "x:1"}},
        "container-root-user",
    ),
    ("defaults-container-uid", EVERYWHERE, box(image="x:1"), None),
    ("defaults-privileged", EVERYWHERE, box(privileged=True), "container-privileged"),
    ("defaults-cap", EVERYWHERE, box(capAdd=["NET_BIND_SERVICE"]), "container-capabilities"),
    (
        "defaults-hostpath",
        EVERYWHERE,
        box(volumes=[{"hostPath": "/tmp", "mountPath": "/t"}]),
        "container-host-path",
    ),
    ("defaults-tf-inline", EVERYWHERE, tf(), None),
    (
        "defaults-tf-path",
        EVERYWHERE,
        {"terraform": {"module": {"path": "/m"}}},
        "terraform-module-path",
    ),
    ("defaults-tf-binary", EVERYWHERE, tf(binary="tofu"), None),
    (
        "defaults-tf-binary-path",
        EVERYWHERE,
        tf(binaryPath="/usr/bin/terraform"),
        "terraform-binary",
    ),
    (
        "defaults-in-cluster",
        EVERYWHERE,
        tf(backend=k8s_backend(inClusterConfig=False)),
        "terraform-backend-in-cluster",
    ),
    (
        "defaults-other-ns",
        EVERYWHERE,
        tf(backend=k8s_backend(namespace="x")),
        "terraform-backend-namespace",
    ),
    ("defaults-own-ns", EVERYWHERE, tf(backend=k8s_backend(namespace=NS)), None),
    (
        "defaults-outputs",
        EVERYWHERE,
        tf(writeOutputsToSecret={"name": "o"}),
        "terraform-outputs-secret",
    ),
    ("defaults-orphan", EVERYWHERE, {**daemon(), "deletionPolicy": "Orphan"}, "deletion-orphan"),
    ("defaults-delete", EVERYWHERE, {**daemon(), "deletionPolicy": "Delete"}, None),
    ("defaults-blocking", EVERYWHERE, daemon(blocking=True), "daemon-blocking"),
    (
        "no-inline",
        {**EVERYWHERE, "terraform": {"moduleSources": {"inline": False}}},
        tf(),
        "terraform-module-inline",
    ),
    ("flavor-ok", {**EVERYWHERE, "flavors": ["terraform"]}, tf(), None),
    ("flavor-no", {**EVERYWHERE, "flavors": ["terraform"]}, daemon(), "flavor"),
    (
        "root-path-listed",
        {**EVERYWHERE, "container": {"hostPathPrefixes": ["/"]}},
        box(volumes=[{"hostPath": "/", "mountPath": "/h"}]),
        None,
    ),
    (
        "root-prefix-not-socket",
        {**EVERYWHERE, "container": {"hostPathPrefixes": ["/"]}},
        box(volumes=[{"hostPath": "/run/docker.sock", "mountPath": "/h"}]),
        "container-host-path",
    ),
    (
        "root-prefix-other",
        {**EVERYWHERE, "container": {"hostPathPrefixes": ["/"]}},
        box(volumes=[{"hostPath": "/data", "mountPath": "/h"}]),
        None,
    ),
    (
        "pids-on-daemon-only",
        {**EVERYWHERE, "maxPids": 10},
        daemon(),
        "max-pids" if "daemon" in resource_flavors("pids") else None,
    ),
    ("pids-not-on-containers", {**EVERYWHERE, "maxPids": 10}, box(), None),
    (
        "grace-default-terraform",
        {**EVERYWHERE, "maxStopGracePeriodSeconds": 20},
        tf(),
        "max-stop-grace-period",
    ),
    ("grace-default-daemon", {**EVERYWHERE, "maxStopGracePeriodSeconds": 20}, daemon(), None),
    ("timeout-default", {**EVERYWHERE, "maxTimeoutSeconds": 1000}, tf(), "max-timeout"),
    ("timeout-set", {**EVERYWHERE, "maxTimeoutSeconds": 1000}, tf(applyTimeoutSeconds=600), None),
    ("log-default", {**EVERYWHERE, "maxLogBytes": 40 * 1024 * 1024}, daemon(), None),
    (
        "log-default-over",
        {**EVERYWHERE, "maxLogBytes": 40 * 1024 * 1024 - 1},
        daemon(),
        "max-log-bytes",
    ),
    ("limits-daemon", {**EVERYWHERE, "requireLimits": True}, daemon(), None),
    (
        "memory-daemon",
        {**EVERYWHERE, "maxMemory": "1Mi"},
        daemon(),
        "max-memory" if DAEMON_LIMITS else None,
    ),
    (
        "memory-quantity-units",
        {**EVERYWHERE, "maxMemory": "0.5Gi"},
        box(resources={"memory": "512Mi"}),
        None,
    ),
]


if DAEMON_LIMITS:  # DaemonSpec has resources: the ceilings and requireLimits reach daemons too
    EXTRA += [
        (
            "daemon-no-limits",
            {**EVERYWHERE, "requireLimits": True},
            {"daemon": {"command": ["/x"]}},
            "require-limits",
        ),
        (
            "daemon-memory-unset",
            {**EVERYWHERE, "maxMemory": "1Gi"},
            {"daemon": {"command": ["/x"]}},
            "max-memory",
        ),
        ("daemon-memory-ok", {**EVERYWHERE, "maxMemory": "1Gi"}, daemon(), None),
        ("daemon-cpu-over", {**EVERYWHERE, "maxCpu": "100m"}, daemon(), "max-cpu"),
    ]
if "daemon" in resource_flavors("pids"):
    EXTRA += [
        ("daemon-pids-ok", {**EVERYWHERE, "maxPids": 64}, daemon(resources={"pids": 64}), None),
        (
            "daemon-pids-over",
            {**EVERYWHERE, "maxPids": 64},
            daemon(resources={"pids": 65}),
            "max-pids",
        ),
        ("daemon-pids-unset", {**EVERYWHERE, "maxPids": 64}, daemon(), "max-pids"),
    ]


@pytest.mark.parametrize(("name", "spec", "ms", "expected"), EXTRA, ids=[e[0] for e in EXTRA])
def test_extra_rules(
    name: str, spec: dict[str, Any], ms: dict[str, Any], expected: str | None
) -> None:
    manifest = {"metadata": {"name": "svc", "namespace": NS}, "spec": ms}
    assert first_rule(spec, manifest) == expected


def test_every_rule_is_denied_somewhere_and_has_a_check() -> None:
    assert tuple(CHECKS) == RULE_IDS
    denied = {c.denied_by for c in CASES} | {e[3] for e in EXTRA}
    untested = set(RULE_IDS) - denied - ({"max-pids"} if not resource_flavors("pids") else set())
    assert not untested, untested


def test_violation_names_rule_policy_and_field() -> None:
    found = evaluate(
        policy("team-a", STRICT),
        Case(
            "x",
            STRICT_LABEL,
            box(
                volumes=[
                    {"hostPath": "/srv", "mountPath": "/a"},
                    {"hostPath": "/", "mountPath": "/b"},
                ]
            ),
            None,
        ).manifest(NS),
    )
    assert [(v.rule, v.path, v.policy) for v in found] == [
        ("container-host-path", "spec.container.volumes[0].hostPath", "team-a"),
        ("container-host-path", "spec.container.volumes[1].hostPath", "team-a"),
    ]
    assert found[0].message == rule("container-host-path").full_message("team-a")
    assert (
        found[0].message.startswith("container-host-path: ")
        and "(StewardPolicy team-a)" in found[0].message
    )


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1"}}, {}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}, False),
        (
            {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
            {"a": "1"},
            False,
        ),
    ],
)
def test_selector(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    spec = StewardPolicySpec.model_validate({"namespaceSelector": selector})
    assert selector_matches(spec.namespace_selector, labels) is matches


def test_select_returns_every_selecting_policy_and_all_apply() -> None:
    everywhere = policy("b-everywhere", {"namespaceSelector": {}, "allowOrphan": False})
    relaxed = policy("a-relaxed", RELAXED)
    strict = policy("c-strict", STRICT)
    chosen = select([everywhere, relaxed, strict], {"steward.dev/policy": RELAXED_LABEL})
    assert [p.metadata.name for p in chosen] == ["a-relaxed", "b-everywhere"]
    assert select([strict], {}) == []
    orphan = {
        "metadata": {"name": "s", "namespace": NS},
        "spec": {**daemon(), "deletionPolicy": "Orphan"},
    }
    # relaxed allows Orphan, the everywhere-policy does not: the most restrictive wins
    found = check([everywhere, relaxed, strict], {"steward.dev/policy": RELAXED_LABEL}, orphan)
    assert [(v.rule, v.policy) for v in found] == [("deletion-orphan", "b-everywhere")]
    # no policy selects: admission allows, and so does check()
    assert check([strict], {}, orphan) == []


@pytest.mark.parametrize(
    "spec",
    [
        {},  # namespaceSelector is required
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
            }
        },
        {"namespaceSelector": {}, "container": {"hostPathPrefixes": ["/srv/"]}},
        {"namespaceSelector": {}, "container": {"hostPathPrefixes": ["/srv/../etc"]}},
        {"namespaceSelector": {}, "daemon": {"commands": ["bin/"]}},
        {"namespaceSelector": {}, "flavors": ["vm"]},
        {"namespaceSelector": {}, "maxMemory": "lots"},
        {"namespaceSelector": {}, "privileged": True},  # unknown key
    ],
)
def test_invalid_policies_are_rejected(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StewardPolicy.parse(policy("p", spec))


def test_rules_messages_are_cel_safe_and_ids_unique() -> None:
    assert len(set(RULE_IDS)) == len(RULES)
    for r in RULES:
        assert "'" not in r.message and r.path.startswith("spec")


def test_no_policy_allows_blocking() -> None:
    with pytest.raises(ValidationError):
        StewardPolicySpec.model_validate({**EVERYWHERE, "daemon": {"allowBlocking": True}})
    assert "allowBlocking" not in rule("daemon-blocking").cel


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        (daemon(), []),
        (daemon(blocking=False), []),
        (daemon(blocking=True), ["daemon-blocking"]),
        (daemon(singleton=True), []),  # the policies' business (--enforce-policy, admission)
        ({**daemon(), "deletionPolicy": "Orphan"}, []),
        (box(), []),
        (tf(), []),
    ],
)
def test_operator_refusals_whatever_the_policies(spec: dict[str, Any], refused: list[str]) -> None:
    found = operator_refusals(
        ManagedService.parse(Case("x", STRICT_LABEL, spec, None).manifest(NS))
    )
    assert [m.split(":")[0] for m in found] == refused
    for message in found:
        assert message.endswith("(operator mode)") and "own process" in message


UID = "0b7c6f5e-1111-2222-3333-444455556666"
OURS = {"app.kubernetes.io/managed-by": "steward", "steward.dev/owner": UID}

# (case, labels or None for no Secret, ownerReference uids, writable)
SECRETS: list[tuple[str, dict[str, str] | None, list[str], bool]] = [
    ("absent", None, [], True),
    ("ours", OURS, [UID], True),
    ("ours-before-owner-label", {"app.kubernetes.io/managed-by": "steward"}, [UID], True),
    ("ours-among-owners", OURS, ["other", UID], True),
    ("unlabelled", {}, [], False),
    ("someone-elses", {"app": "db"}, [], False),
    ("owner-ref-only", {}, [UID], False),
    ("labels-only", OURS, [], False),
    ("another-resource", {**OURS, "steward.dev/owner": "other"}, ["other"], False),
    ("label-says-other", {**OURS, "steward.dev/owner": "other"}, [UID], False),
    ("other-manager", {**OURS, "app.kubernetes.io/managed-by": "helm"}, [UID], False),
]


@pytest.mark.parametrize(
    ("name", "labels", "owners", "writable"), SECRETS, ids=[s[0] for s in SECRETS]
)
def test_outputs_secret_only_when_steward_made_it_for_this_resource(
    name: str, labels: dict[str, str] | None, owners: list[str], writable: bool
) -> None:
    refusal = outputs_secret_refusal("db-creds", labels, owners, UID)
    assert (refusal is None) == writable
    if labels is not None:
        assert owns_secret(labels, owners, UID) == writable
    if refusal is not None:
        assert refusal.startswith("outputs-secret-not-owned: Secret db-creds exists")


def test_a_resource_without_uid_owns_nothing() -> None:
    assert not owns_secret(OURS, [""], "")
    assert outputs_secret_refusal("s", {"app.kubernetes.io/managed-by": "steward"}, [""], "")
