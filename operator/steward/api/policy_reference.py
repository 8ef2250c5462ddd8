"""The StewardPolicy reference in Markdown, generated from the same schema as its CRD."""

from __future__ import annotations

from steward.api.crd import policy_openapi_schema
from steward.api.policy import DEFAULT_POLICY_SPEC, POLICY_LABEL, RULES, SENSITIVE_HOST_PATHS
from steward.api.reference import _rows


def policy_reference_markdown() -> str:
    schema = policy_openapi_schema()
    spec = schema["properties"]["spec"]
    rows: list[str] = []
    _rows(spec, "spec", rows)
    rules = [f"| `{r.id}` | `{r.path}` | `{r.allowed_by}` | {r.message} |" for r in RULES]
    default = ", ".join(f"`{k}`" for k in DEFAULT_POLICY_SPEC)
    return "\n".join(
        [
            "# StewardPolicy reference",
            "",
            "Generated from the pydantic models (`make crd`). Do not edit.",
            "",
            "A StewardPolicy (`stwpol`) is cluster-scoped and owned by the cluster admin. It says",
            "what the ManagedServices of the namespaces its `namespaceSelector` selects may do.",
            "Everything that reaches past a service's own sandbox is denied unless allowed.",
            "",
            "## Which policies apply",
            "",
            "**Every** policy whose `namespaceSelector` selects a namespace applies, and a",
            "ManagedService there must satisfy all of them: the most restrictive result. There is",
            "no priority. A namespace no policy selects is not restricted by admission.",
            "",
            f"The chart's default policy (`policy.default`; keys set: {default}) selects the",
            f"namespaces **without** the label `{POLICY_LABEL}`. To give a namespace its own",
            f"policy instead of the default, label it `{POLICY_LABEL}=<name>` and select that",
            "label in the policy. Namespace labels are the admin's: tenants cannot move",
            "themselves between policies unless they can edit their namespace.",
            "",
            "## How it is enforced",
            "",
            "At admission, by a ValidatingAdmissionPolicy (`paramKind: StewardPolicy`) and one",
            "binding whose `paramRef.selector: {}` selects every StewardPolicy",
            "(`parameterNotFoundAction: Deny`: with no StewardPolicy at all, every ManagedService",
            "is refused). Each policy is evaluated on its own; its `namespaceSelector` is matched",
            "in CEL against the labels of the request's namespace (`namespaceObject`), so a new",
            "policy needs no new binding. Creates are checked, and updates that change `spec`",
            "(the operator's finalizer and annotation patches are not). The denial names the",
            "rule and the policy: `container-privileged: privileged containers are not allowed",
            "(container.allowPrivileged) (StewardPolicy team-a)`.",
            "",
            "The engine checks the same rules (`steward.engine.policy`) before a service starts.",
            "",
            "## Rules",
            "",
            "| rule | field of the ManagedService | relaxed by | denial |",
            "|---|---|---|---|",
            *rules,
            "",
            "Paths (`daemon.commands` directories, `hostPath`, `module.path`) must be normalized",
            "and absolute: no `.` or `..` segments, no `//`, no trailing `/`. Paths that are",
            "allowed as a hostPath only when listed exactly (a prefix never covers them): "
            + ", ".join(f"`{p}`" for p in SENSITIVE_HOST_PATHS)
            + ". Symbolic links on the host are not resolved at admission.",
            "",
            "Ceilings count the defaults: an omitted `stopGracePeriodSeconds` is the flavor's",
            "default, an omitted memory or CPU limit is unlimited (so `maxMemory`/`maxCpu` make",
            "the limit required on flavors that have `resources`).",
            "",
            "## spec",
            "",
            " ".join(str(spec.get("description", "")).split()),
            "",
            "| field | type | description |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
