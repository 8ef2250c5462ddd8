"""The resource reference in Markdown, generated from the same schema as the CRD."""

from __future__ import annotations

from typing import Any

from steward.api.crd import openapi_schema


def _type(node: dict[str, Any]) -> str:
    t = str(node.get("type", "any"))
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if t == "array":
        return f"[]{_type(node.get('items', {}))}"
    if t == "object" and "properties" not in node:
        return "map" if node.get("additionalProperties") else "object (free-form)"
    return t


def _rows(node: dict[str, Any], path: str, out: list[str]) -> None:
    props = node.get("properties") or {}
    required = set(node.get("required") or [])
    for name, sub in props.items():
        here = f"{path}.{name}" if path else name
        desc = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
        req = " (required)" if name in required else ""
        out.append(f"| `{here}` | {_type(sub)}{req} | {desc} |")
        target = sub.get("items", {}) if sub.get("type") == "array" else sub
        if target.get("properties"):
            _rows(target, f"{here}[]" if sub.get("type") == "array" else here, out)


def reference_markdown() -> str:
    schema = openapi_schema()
    parts = [
        "# ManagedService reference",
        "",
        "Generated from the pydantic models by `steward crd --reference` (`make crd`). Do not edit.",
        "",
    ]
    for section in ("spec", "status"):
        node = schema["properties"][section]
        rules = node.get("x-kubernetes-validations") or []
        parts += [f"## {section}", "", " ".join(str(node.get("description", "")).split()), ""]
        if rules:
            parts += ["Admission rules: " + "; ".join(r["message"] for r in rules) + ".", ""]
        rows: list[str] = []
        _rows(node, section, rows)
        parts += ["| field | type | description |", "|---|---|---|", *rows, ""]
    return "\n".join(parts)
