"""Generate the ManagedService, StewardPolicy and StewardNode CRDs (and the admission policy) from the pydantic models (the one source of truth).

Pydantic's JSON schema is turned into a Kubernetes *structural* schema:
``$ref`` inlined, ``anyOf: [X, null]`` -> ``nullable``, no ``title``, no
``default`` (the operator applies defaults when it parses, so users' objects
are never rewritten), free-form maps marked ``x-kubernetes-preserve-unknown-fields``,
and the CEL rules declared on the models kept.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from steward.api.base import re2
from steward.api.flavors import FLAVORS, one_of
from steward.api.manifest import API_GROUP, API_VERSION, KIND, SERVICE_NAME_MESSAGE
from steward.api.node import (
    NODE_KIND,
    NODE_PLURAL,
    NODE_SHORT_NAMES,
    NODE_SINGULAR,
    StewardNodeSpec,
    StewardNodeStatus,
)
from steward.api.policy import (
    DEFAULT_POLICY_SPEC,
    POLICY_KIND,
    POLICY_PLURAL,
    POLICY_SHORT_NAMES,
    POLICY_SINGULAR,
    RULES,
    StewardPolicySpec,
)
from steward.api.spec import ManagedServiceSpec
from steward.api.status import ManagedServiceStatus

PLURAL = "managedservices"
SINGULAR = "managedservice"
SHORT_NAMES = ["msvc"]
CATEGORIES = ["steward", "all"]
NODE_NAME_FIELD = "status.placement.nodeName"
"""A selectable field (Kubernetes 1.32+): an agent watches ``status.placement.nodeName=<node>``
only, as kubelet watches ``spec.nodeName=<node>``."""
_LABELS = {"app.kubernetes.io/name": "steward", "app.kubernetes.io/part-of": "steward"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Type",
        "type": "string",
        "description": one_of(),
        "jsonPath": ".status.flavor",
    },
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint.uri"},
    {"name": "Health", "type": "string", "jsonPath": ".status.health.state"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "description": "why it is (not) Ready: CrashLoopBackOff, ImagePullBackOff, Unhealthy...",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {
        "name": "Node",
        "type": "string",
        "description": "the StewardNode it is bound to (empty in single-host mode)",
        "jsonPath": f".{NODE_NAME_FIELD}",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _scalar_default(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str) and value != "":
        return str(value)
    return None


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON-schema node -> a structural-schema node."""
    node = copy.deepcopy(schema)
    if "$ref" in node:
        ref = node.pop("$ref").split("/")[-1]
        merged = {**copy.deepcopy(defs[ref]), **node}
        return structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        if len(options) == 1:
            inner = structural(options[0], defs)
            for key in ("description", "default"):
                if key in node:
                    inner[key] = node[key]
            node = {**inner, **{k: v for k, v in node.items() if k not in inner}}
        else:  # a true union: accept anything of those (validated by the operator)
            node["x-kubernetes-preserve-unknown-fields"] = True
        if nullable:
            node["nullable"] = True
    node.pop("title", None)
    node.pop("discriminator", None)
    if "default" in node:
        default = _scalar_default(node.pop("default"))
        desc = node.get("description", "")
        if default is not None and "Default" not in desc:
            node["description"] = f"{desc} Defaults to `{default}`.".strip()
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[limit] = node.pop(bound)  # JSON Schema 2020 -> OpenAPI 3.0 form
            node[bound] = True
    if isinstance(node.get("pattern"), str):
        node["pattern"] = re2(node["pattern"])
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.get("properties")
        if props is not None:
            node["properties"] = {k: structural(v, defs) for k, v in props.items()}
        extra = node.pop("additionalProperties", None)
        if props is None:
            if isinstance(extra, dict) and extra:
                node["additionalProperties"] = structural(extra, defs)
            else:
                node["x-kubernetes-preserve-unknown-fields"] = True
    elif node.get("type") == "array":
        node["items"] = structural(node.get("items", {}), defs)
    elif (
        "type" not in node
        and "enum" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not node.get("x-kubernetes-int-or-string")  # a quantity: typed by the extension
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True  # Any
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("format") == "date-time":
        node["type"] = "string"
    return node


def model_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def openapi_schema() -> dict[str, Any]:
    """The version's openAPIV3Schema."""
    spec = model_schema(ManagedServiceSpec)
    status = model_schema(ManagedServiceStatus)
    # A new object shows observedGeneration 0 until Steward has looked at it, so kstatus
    # (Flux, Helm 4 --wait) reads "not yet observed" (InProgress) instead of Current.
    status["default"] = {"observedGeneration": 0}
    return {
        "type": "object",
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') "
                "&& size(self.metadata.name) <= 63",
                "message": "metadata.name must be a DNS-1123 label (at most 63 characters, "
                "no dots): it names processes, containers and Terraform state",
            },
            {
                "rule": "!has(self.spec.endpoint) || !has(self.spec.endpoint.expose) "
                "|| self.spec.endpoint.expose != 'Cluster' || self.metadata.name.matches('^[a-z]')",
                "message": SERVICE_NAME_MESSAGE,
            },
        ],
        "description": "A service Steward runs beside Kubernetes workloads: "
        f"{one_of([f.noun for f in FLAVORS])}.",
        "required": ["spec"],
        "properties": _object_properties(KIND, spec, status),
    }


def _object_properties(
    kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The top-level properties of a steward.dev object's schema (``status`` only if it has one)."""
    props: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": f"{API_GROUP}/{API_VERSION}"},
        "kind": {"type": "string", "description": kind},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        props["status"] = status
    return props


def _crd_object(
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    *,
    categories: list[str],
    scope: str,
    columns: list[dict[str, Any]],
    schema: dict[str, Any],
    status: bool,
    selectable_fields: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One CustomResourceDefinition of the steward.dev group with a single served version
    (``status``: it has the status subresource)."""
    version: dict[str, Any] = {}
    if status:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = columns
    if selectable_fields:
        version["selectableFields"] = [{"jsonPath": f".{f}"} for f in selectable_fields]
    version["schema"] = {"openAPIV3Schema": schema}
    names = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": singular,
        "shortNames": short_names,
        "categories": categories,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}", "labels": dict(_LABELS)},
        "spec": {
            "group": API_GROUP,
            "scope": scope,
            "names": names,
            "versions": [{"name": API_VERSION, "served": True, "storage": True, **version}],
        },
    }


def _generated_yaml(obj: dict[str, Any]) -> str:
    """A generated CRD as its committed YAML file."""
    header = "# Generated from the pydantic models by `steward crd`. Do not edit.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, width=100)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return _crd_object(
        KIND,
        PLURAL,
        SINGULAR,
        SHORT_NAMES,
        categories=CATEGORIES,
        scope="Namespaced",
        columns=PRINTER_COLUMNS,
        schema=openapi_schema(),
        status=True,
        selectable_fields=(NODE_NAME_FIELD,),
    )


def crd_yaml() -> str:
    """The CRD as the committed YAML file (generated; do not edit by hand)."""
    return _generated_yaml(crd())


# --------------------------------------------------------------------------- StewardPolicy
POLICY_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Flavors",
        "type": "string",
        "description": "allowed flavors (empty: all)",
        "jsonPath": ".spec.flavors",
    },
    {"name": "Privileged", "type": "boolean", "jsonPath": ".spec.container.allowPrivileged"},
    {"name": "HostNetwork", "type": "boolean", "jsonPath": ".spec.container.allowHostNetwork"},
    {"name": "MaxMemory", "type": "string", "jsonPath": ".spec.maxMemory"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def policy_openapi_schema() -> dict[str, Any]:
    """The StewardPolicy version's openAPIV3Schema."""
    return {
        "type": "object",
        "description": "Cluster-scoped, admin-owned: what the ManagedServices of the namespaces "
        "it selects may do. Every policy selecting a namespace applies (the most restrictive "
        "result); enforced at admission and again before a service starts.",
        "required": ["spec"],
        "properties": _object_properties(POLICY_KIND, model_schema(StewardPolicySpec)),
    }


def policy_crd() -> dict[str, Any]:
    """The StewardPolicy CustomResourceDefinition (cluster-scoped, no status)."""
    return _crd_object(
        POLICY_KIND,
        POLICY_PLURAL,
        POLICY_SINGULAR,
        POLICY_SHORT_NAMES,
        categories=["steward"],
        scope="Cluster",
        columns=POLICY_PRINTER_COLUMNS,
        schema=policy_openapi_schema(),
        status=False,
    )


def policy_crd_yaml() -> str:
    return _generated_yaml(policy_crd())


# --------------------------------------------------------------------------- StewardNode
NODE_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "description": "the agent renews its Lease (Unknown: lost)",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Services", "type": "integer", "jsonPath": ".status.services"},
    {"name": "Max", "type": "string", "jsonPath": ".status.allocatable.services"},
    {"name": "CPU", "type": "string", "jsonPath": ".status.allocatable.cpu"},
    {"name": "Memory", "type": "string", "jsonPath": ".status.allocatable.memory"},
    {
        "name": "Docker",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="DockerReady")].status',
    },
    {"name": "Unschedulable", "type": "boolean", "jsonPath": ".spec.unschedulable"},
    {
        "name": "Address",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.addresses[?(@.type=="InternalIP")].address',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def node_crd() -> dict[str, Any]:
    """The StewardNode CustomResourceDefinition (cluster-scoped, status written by agents)."""
    schema = {
        "type": "object",
        "description": "A host that runs ManagedServices, registered by its `steward agent`.",
        "properties": _object_properties(
            NODE_KIND, model_schema(StewardNodeSpec), model_schema(StewardNodeStatus)
        ),
    }
    return _crd_object(
        NODE_KIND,
        NODE_PLURAL,
        NODE_SINGULAR,
        NODE_SHORT_NAMES,
        categories=["steward"],
        scope="Cluster",
        columns=NODE_PRINTER_COLUMNS,
        schema=schema,
        status=True,
    )


def node_crd_yaml() -> str:
    return _generated_yaml(node_crd())


# --------------------------------------------------------------------------- admission
ADMISSION_NAME = "steward-managedservices"
DEFAULT_POLICY_NAME = "steward-default"


def _selector_cel() -> str:
    """CEL: the param's namespaceSelector selects the request's namespace (metav1 semantics)."""
    sel = "params.spec.namespaceSelector"
    lab = "variables.labels"
    return (
        f"{sel}.?matchLabels.orValue({{}}).all(k, k in {lab} && {lab}[k] == {sel}.matchLabels[k]) "
        f"&& {sel}.?matchExpressions.orValue([]).all(e, "
        f"e.operator == 'In' ? (e.key in {lab} && {lab}[e.key] in e.?values.orValue([])) : "
        f"e.operator == 'NotIn' ? !(e.key in {lab} && {lab}[e.key] in e.?values.orValue([])) : "
        f"e.operator == 'Exists' ? e.key in {lab} : !(e.key in {lab}))"
    )


def _flavor_cel() -> str:
    s = "object.spec"
    chain = " : ".join(f"has({s}.{f.field}) ? '{f.name}'" for f in FLAVORS[:-1])
    return f"{chain} : '{FLAVORS[-1].name}'"


def admission_policy_spec() -> dict[str, Any]:
    """The ValidatingAdmissionPolicy's spec: one validation per rule of ``api.policy.RULES``."""
    return {
        "failurePolicy": "Fail",
        "paramKind": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": POLICY_KIND},
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [API_GROUP],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [PLURAL],
                }
            ]
        },
        "matchConditions": [
            {
                # The operator's own patches (finalizer, annotations) and a deletion keep the
                # spec: they must pass even under a policy tightened since the object was made.
                "name": "spec-created-or-changed",
                "expression": "request.operation == 'CREATE' || oldObject == null "
                "|| object.spec != oldObject.spec",
            }
        ],
        "variables": [
            {"name": "p", "expression": "params.spec"},
            {"name": "labels", "expression": "namespaceObject.metadata.?labels.orValue({})"},
            {"name": "selected", "expression": _selector_cel()},
        ],
        "validations": [
            {
                "expression": f"!variables.selected || ({r.cel})",
                "messageExpression": f"'{r.id}: {r.message} (StewardPolicy ' "
                "+ params.metadata.name + ')'",
                "reason": "Forbidden",
            }
            for r in RULES
        ],
    }


def admission_binding_spec(policy_name: str) -> dict[str, Any]:
    """One binding for every StewardPolicy: each param's own namespaceSelector is checked in CEL."""
    return {
        "policyName": policy_name,
        "validationActions": ["Deny"],
        "paramRef": {"selector": {}, "parameterNotFoundAction": "Deny"},
    }


def admission_objects(
    name: str = ADMISSION_NAME, default_policy: str | None = DEFAULT_POLICY_NAME
) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy, its binding and (optionally) the default StewardPolicy."""
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "labels": dict(_LABELS)},
            "spec": admission_policy_spec(),
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": dict(_LABELS)},
            "spec": admission_binding_spec(name),
        },
    ]
    if default_policy:
        out.append(
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": POLICY_KIND,
                "metadata": {"name": default_policy, "labels": dict(_LABELS)},
                "spec": DEFAULT_POLICY_SPEC,
            }
        )
    return out


def admission_yaml() -> str:
    """deploy/admission-policy.yaml: the admission policy for non-Helm installs."""
    header = (
        "# Generated from steward.api.policy by `steward crd`. Do not edit.\n"
        "# Needs crds/stewardpolicies.steward.dev.yaml first. The binding's paramRef selects\n"
        "# every StewardPolicy (parameterNotFoundAction: Deny, so with none at all every\n"
        "# ManagedService is refused); each policy applies where its namespaceSelector selects.\n"
    )
    docs = admission_objects()
    return header + "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)


def chart_admission_template() -> str:
    """charts/steward/templates/admission-policy.yaml (generated; names and labels templated)."""

    def body(spec: dict[str, Any]) -> str:
        return yaml.safe_dump({"spec": spec}, sort_keys=False, width=100)

    name = '{{ include "steward.clusterName" . }}'
    labels = '  labels:\n    {{- include "steward.labels" . | nindent 4 }}\n'
    return (
        "{{- /* Generated from steward.api.policy by `steward crd`. Do not edit. */ -}}\n"
        "{{- if .Values.policy.enabled }}\n"
        "apiVersion: admissionregistration.k8s.io/v1\n"
        "kind: ValidatingAdmissionPolicy\n"
        f"metadata:\n  name: {name}\n{labels}" + body(admission_policy_spec()) + "---\n"
        "apiVersion: admissionregistration.k8s.io/v1\n"
        "kind: ValidatingAdmissionPolicyBinding\n"
        f"metadata:\n  name: {name}\n{labels}"
        + body(admission_binding_spec("POLICY_NAME")).replace("POLICY_NAME", name)
        + "{{- end }}\n"
    )
