"""Generate the ManagedService CRD from the pydantic models (the one source of truth).

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

from steward.api.flavors import FLAVORS, one_of
from steward.api.manifest import API_GROUP, API_VERSION, KIND
from steward.api.spec import ManagedServiceSpec
from steward.api.status import ManagedServiceStatus

PLURAL = "managedservices"
SINGULAR = "managedservice"
SHORT_NAMES = ["msvc"]
CATEGORIES = ["steward", "all"]

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
    return {
        "type": "object",
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') "
                "&& size(self.metadata.name) <= 63",
                "message": "metadata.name must be a DNS-1123 label (at most 63 characters, "
                "no dots): it names processes, containers and Terraform state",
            }
        ],
        "description": "A service Steward runs beside Kubernetes workloads: "
        f"{one_of([f.noun for f in FLAVORS])}.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "steward.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ManagedService"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "steward", "app.kubernetes.io/part-of": "steward"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the committed YAML file (generated; do not edit by hand)."""
    header = "# Generated from the pydantic models by `steward crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
