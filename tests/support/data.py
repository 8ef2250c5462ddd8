"""Files under tests/data: Terraform modules and manifests shared by several tests."""

from __future__ import annotations

from tests.support.paths import DATA


def terraform(*names: str) -> str:
    """The text of tests/data/terraform/NAME, one file after the other (one main.tf)."""
    return "\n".join((DATA / "terraform" / name).read_text() for name in names)
