"""Drift: `plan -detailed-exitcode` finds what changed outside Terraform, and re-applies or reports."""

from __future__ import annotations

import time
from pathlib import Path

from steward.api.state import ServiceState
from tests.support.terraform import DRIFT, MakeRT, spec_of


def drift_spec(tmp_path: Path, **drift: object) -> dict[str, object]:
    watch, out = tmp_path / "watch.txt", tmp_path / "out.txt"
    watch.write_text("v1\n")
    return spec_of(
        DRIFT,
        vars={"watch": str(watch), "out": str(out)},
        driftDetection=drift or {"intervalSeconds": 3600},
    )


def test_drift_is_corrected_by_a_reapply(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(drift_spec(tmp_path))
    rt.start()
    assert (tmp_path / "out.txt").read_text() == "v1\n"
    assert rt.check_drift() == "none"

    (tmp_path / "watch.txt").write_text("v2\n")  # the world moved
    assert rt.check_drift() == "corrected"

    assert (tmp_path / "out.txt").read_text() == "v2\n"
    obs = rt.observe()
    assert obs.state is ServiceState.ACTIVE
    assert obs.details["drift"]["status"] == "corrected"
    assert obs.details["drift"]["corrections"] == 1
    assert "terraform_data.copy" in rt.record.drift.message
    assert rt.check_drift() == "none"
    assert rt.observe().details["initCount"] == 1


def test_observe_schedules_background_checks(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(drift_spec(tmp_path, intervalSeconds=1))
    rt.start()
    (tmp_path / "watch.txt").write_text("v2\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obs = rt.observe()  # never blocks on Terraform
        if obs.details.get("drift", {}).get("corrections") == 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"drift never corrected: {rt.observe()}")
    assert (tmp_path / "out.txt").read_text() == "v2\n"
    assert rt.observe().state is ServiceState.ACTIVE


def test_drift_report_only(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(drift_spec(tmp_path, action="Report", intervalSeconds=3600))
    rt.start()
    (tmp_path / "watch.txt").write_text("v2\n")
    assert rt.check_drift() == "detected"
    obs = rt.observe()
    assert obs.state is ServiceState.ACTIVE
    assert obs.reason == "DriftDetected"
    assert "terraform_data.copy must be replaced" in obs.message
    assert (tmp_path / "out.txt").read_text() == "v1\n", "Report must not re-apply"
    (tmp_path / "watch.txt").write_text("v1\n")  # drift undone by hand
    assert rt.check_drift() == "none"
    assert rt.observe().reason == ""


def test_drift_check_error_reports_terraform_diagnostic(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(drift_spec(tmp_path))
    rt.start()
    (tmp_path / "watch.txt").unlink()
    assert rt.check_drift() == "error"
    obs = rt.observe()
    assert obs.state is ServiceState.ERROR
    assert obs.message.startswith("terraform plan failed (exit 1): Error:")
    assert "watch.txt" in obs.message
    assert obs.reason == "TerraformPlanFailed"
    (tmp_path / "watch.txt").write_text("v3\n")
    rt.start()  # what the engine's restart does
    assert rt.observe().state is ServiceState.ACTIVE
    assert (tmp_path / "out.txt").read_text() == "v3\n"
