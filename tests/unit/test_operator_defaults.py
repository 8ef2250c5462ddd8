"""Install-wide Terraform defaults fill only what a spec leaves unset."""

from __future__ import annotations

import pytest

from steward.k8s.controller import operator_defaults


def test_defaults_fill_unset_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_TERRAFORM_BINARY", "bundled")
    monkeypatch.setenv("STEWARD_TERRAFORM_STATE_BACKEND", "kubernetes")
    spec = {"terraform": {"module": {"path": "/m"}}}
    out = operator_defaults(spec)
    assert out["terraform"]["binary"] == "bundled"
    assert out["terraform"]["backend"] == {"kubernetes": {}}
    assert spec == {"terraform": {"module": {"path": "/m"}}}, "the input is not modified"


def test_spec_wins_and_auto_local_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_TERRAFORM_BINARY", "bundled")
    monkeypatch.setenv("STEWARD_TERRAFORM_STATE_BACKEND", "kubernetes")
    spec = {
        "terraform": {"module": {"path": "/m"}, "binary": "terraform", "backend": {"local": {}}}
    }
    assert operator_defaults(spec) == spec
    monkeypatch.setenv("STEWARD_TERRAFORM_BINARY", "auto")
    monkeypatch.setenv("STEWARD_TERRAFORM_STATE_BACKEND", "local")
    assert operator_defaults({"terraform": {"module": {"path": "/m"}}}) == {
        "terraform": {"module": {"path": "/m"}}
    }
    assert operator_defaults({"daemon": {"command": ["x"]}}) == {"daemon": {"command": ["x"]}}
