"""Every file generated from the API models, by path; `python -m steward.api.generated` writes them.

A unit test compares each committed file with its generator (`make crd`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from steward.api.crd import (
    admission_yaml,
    chart_admission_template,
    node_crd_yaml,
    policy_crd_yaml,
)

POLICY_CRD = "crds/stewardpolicies.steward.dev.yaml"
NODE_CRD = "crds/stewardnodes.steward.dev.yaml"

GENERATED: dict[str, Callable[[], str]] = {
    POLICY_CRD: policy_crd_yaml,
    "charts/steward/crds/stewardpolicies.steward.dev.yaml": policy_crd_yaml,
    NODE_CRD: node_crd_yaml,
    "charts/steward/crds/stewardnodes.steward.dev.yaml": node_crd_yaml,
    "deploy/admission-policy.yaml": admission_yaml,
    "charts/steward/templates/admission-policy.yaml": chart_admission_template,
}
"""Policy and node files (the ManagedService CRD and docs/reference.md are written by `steward crd`)."""


def _reference() -> str:
    from steward.api.policy_reference import policy_reference_markdown

    return policy_reference_markdown()


GENERATED["docs/policy-reference.md"] = _reference


def main(argv: list[str] | None = None) -> int:
    root = Path((argv if argv is not None else sys.argv[1:] or ["."])[0])
    for rel, make in GENERATED.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
