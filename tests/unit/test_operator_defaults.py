"""Install-wide Terraform defaults fill only what a spec leaves unset; config from flags and env."""

from __future__ import annotations

from pathlib import Path

from steward.k8s.config import OperatorConfig
from steward.k8s.controller import operator_defaults


def chart_env(binary: str, backend: str) -> OperatorConfig:
    """The configuration the chart's environment produces."""
    return OperatorConfig.from_env(
        {"STEWARD_TERRAFORM_BINARY": binary, "STEWARD_TERRAFORM_STATE_BACKEND": backend}
    )


def test_defaults_fill_unset_fields() -> None:
    spec = {"terraform": {"module": {"path": "/m"}}}
    out = operator_defaults(spec, chart_env("bundled", "kubernetes"))
    assert out["terraform"]["binary"] == "bundled"
    assert out["terraform"]["backend"] == {"kubernetes": {}}
    assert spec == {"terraform": {"module": {"path": "/m"}}}, "the input is not modified"


def test_spec_wins_and_auto_local_change_nothing() -> None:
    spec = {
        "terraform": {"module": {"path": "/m"}, "binary": "terraform", "backend": {"local": {}}}
    }
    assert operator_defaults(spec, chart_env("bundled", "kubernetes")) == spec
    plain = chart_env("auto", "local")
    assert operator_defaults({"terraform": {"module": {"path": "/m"}}}, plain) == {
        "terraform": {"module": {"path": "/m"}}
    }
    assert operator_defaults({"daemon": {"command": ["x"]}}, plain) == {
        "daemon": {"command": ["x"]}
    }


def test_flags_win_over_the_environment_and_unset_flags_fall_back() -> None:
    env = {
        "STEWARD_STATE_DIR": "/env/state",
        "STEWARD_DAEMON_WORKERS": "3",
        "STEWARD_METRICS_PORT": "9100",
        "HOSTNAME": "steward-7f9c",
    }
    cfg = OperatorConfig.from_env(
        env, state_dir=Path("/flag/state"), metrics_port=None, workers={"daemon": None}
    )
    assert cfg.state_dir == Path("/flag/state")
    assert cfg.metrics_port == 9100
    assert cfg.workers == {"daemon": 3, "container": 8, "terraform": 2}
    assert cfg.instance == "steward-7f9c"
    assert OperatorConfig.from_env({}, workers={"terraform": 4}).workers["terraform"] == 4
