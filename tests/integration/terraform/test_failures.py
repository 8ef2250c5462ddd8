"""Bad input fails with Terraform's own diagnostic (clean, redacted) and a distinct reason."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from steward.api.manifest import ManagedService
from steward.api.state import ServiceState
from steward.api.terraform import TerraformSpec
from steward.runtimes.base import RuntimeFailure
from tests.support.terraform import SLOW, MakeRT, sleeps, spec_of

ANSI = re.compile(r"\x1b\[")


def fail(rt: Any) -> RuntimeFailure:
    with pytest.raises(RuntimeFailure) as info:
        rt.start()
    exc = info.value
    assert not ANSI.search(str(exc))
    assert len(str(exc)) <= 1600
    obs = rt.observe()
    assert obs.state is ServiceState.ERROR
    assert obs.reason == exc.reason
    assert obs.exit_code == 1 and obs.finished_at is not None
    return exc


def test_hcl_syntax_error(make_rt: MakeRT) -> None:
    exc = fail(make_rt(spec_of('resource "terraform_data" "x" {\n  input = "a"\n')))
    assert exc.reason == "TerraformSyntaxError"
    assert "Unclosed configuration block" in str(exc)
    assert "on main.tf line 1" in str(exc)


def test_json_syntax_error_in_path_module(tmp_path: Path, make_rt: MakeRT) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "main.tf.json").write_text('{"output": {"x": {"value": 1}')
    exc = fail(make_rt({"module": {"path": str(tmp_path / "m")}}))
    assert exc.reason == "TerraformSyntaxError"
    assert "main.tf.json is not valid JSON" in str(exc)


def test_missing_required_variable(make_rt: MakeRT) -> None:
    exc = fail(
        make_rt(spec_of('variable "region" { type = string }\noutput "r" { value = var.region }\n'))
    )
    assert exc.reason == "TerraformMissingVariable"
    assert 'input variable "region" is not set' in str(exc)


def test_wrong_variable_type(make_rt: MakeRT) -> None:
    rt = make_rt(
        spec_of(
            'variable "n" { type = number }\noutput "n" { value = var.n }\n', vars={"n": "lots"}
        )
    )
    exc = fail(rt)
    assert exc.reason == "TerraformInvalidVariable"
    assert "a number is required" in str(exc)


def test_failing_local_exec_with_secret_redacted(make_rt: MakeRT) -> None:
    main = """
resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "echo \\"connecting with $DB_PASSWORD\\" >&2; exit 3"
  }
}
"""
    password = "hunter2-very-secret"
    rt = make_rt(spec_of(main), secrets=frozenset({password}), env={"DB_PASSWORD": password})
    exc = fail(rt)
    assert exc.reason == "TerraformProvisionerFailed"
    assert "exit status 3" in str(exc)
    assert "connecting with ***" in str(exc)
    logs = "\n".join(rt.logs())
    assert "connecting with ***" in logs and password not in logs
    assert password not in rt.observe().message


def test_missing_module_path(tmp_path: Path, make_rt: MakeRT) -> None:
    exc = fail(make_rt({"module": {"path": str(tmp_path / "nope")}}))
    assert exc.reason == "TerraformModuleNotFound"
    assert "does not exist" in str(exc)
    (tmp_path / "empty").mkdir()
    exc = fail(make_rt({"module": {"path": str(tmp_path / "empty")}}, name="tf2"))
    assert exc.reason == "TerraformModuleNotFound"
    assert "no .tf" in str(exc)


def test_binary_not_found(tmp_path: Path, make_rt: MakeRT, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no terraform, no tofu
    exc = fail(make_rt(spec_of('output "x" { value = 1 }\n', binary="tofu")))
    assert exc.reason == "TerraformBinaryNotFound"
    assert "`tofu` on PATH" in str(exc)
    exc = fail(
        make_rt(
            spec_of('output "x" { value = 1 }\n', binaryPath="/nonexistent/terraform"), name="tf2"
        )
    )
    assert exc.reason == "TerraformBinaryNotFound"
    # auto still works without anything on PATH: the bundled Terraform
    rt = make_rt(spec_of('output "x" { value = 1 }\n'), name="tf3")
    rt.start()
    assert rt.observe().details["binary"]["kind"] == "bundled"


def test_endpoint_output_missing_or_sensitive(make_rt: MakeRT) -> None:
    exc = fail(make_rt(spec_of('output "x" { value = "a" }\n', endpointOutput="url")))
    assert exc.reason == "TerraformEndpointOutputMissing"
    assert "outputs: x" in str(exc)
    main = 'output "url" {\n  value     = "http://u:p4ssw0rd@h"\n  sensitive = true\n}\n'
    rt = make_rt(spec_of(main, endpointOutput="url"), name="tf2")
    exc = fail(rt)
    assert exc.reason == "TerraformEndpointOutputSensitive"
    assert "p4ssw0rd" not in str(exc) + repr(rt.observe())


def test_apply_timeout_stops_the_run(make_rt: MakeRT) -> None:
    rt = make_rt(
        spec_of(SLOW, vars={"seconds": 63.25}, applyTimeoutSeconds=1, stopGracePeriodSeconds=2)
    )
    t0 = time.monotonic()
    exc = fail(rt)
    assert exc.reason == "TerraformTimeout"
    assert time.monotonic() - t0 < 15
    assert not sleeps("63.25"), "the provisioner's sleep outlived the timeout"


def test_vars_from_needs_a_resolver_then_uses_it(make_rt: MakeRT) -> None:
    main = """
variable "password" { type = string }
variable "cfg_region" { type = string }
output "region" { value = var.cfg_region }
output "echo" {
  value     = var.password
  sensitive = true
}
"""
    spec = spec_of(
        main,
        varsFrom=[
            {"secretRef": {"name": "db"}, "key": "pw", "varName": "password"},
            {"configMapRef": {"name": "cfg"}, "prefix": "cfg_"},
        ],
    )
    exc = fail(make_rt(spec))
    assert exc.reason == "TerraformVarsFromUnavailable"
    data = {("secret", "db"): {"pw": "s3cr3t-pw-value"}, ("configMap", "cfg"): {"region": "eu-1"}}

    class Namespace:  # the service's own namespace, as the adapters resolve it
        def read(self, kind: str, name: str) -> dict[str, str] | None:
            return data.get((kind, name))

    rt = make_rt(spec, name="tf2", resolver=Namespace())
    rt.start()
    obs = rt.observe()
    assert obs.details["outputs"] == {"region": "eu-1"}
    assert "s3cr3t-pw-value" not in "\n".join(rt.logs())
    assert (
        "s3cr3t-pw-value"
        not in (rt.ctx.runtime_dir / "module" / "steward.auto.tfvars.json").read_text()
    )
    missing = make_rt(
        spec_of(main, varsFrom=[{"secretRef": {"name": "absent"}}]),
        name="tf3",
        resolver=Namespace(),
    )
    assert fail(missing).reason == "TerraformVarsFromMissing"


@pytest.mark.parametrize(
    ("terraform", "needle"),
    [
        ({"module": {"inline": {"../evil.tf": ""}}}, "no directories or path separators"),
        ({"module": {"inline": {"sub/main.tf": ""}}}, "no directories or path separators"),
        ({"module": {"inline": {".hidden.tf": ""}}}, "not starting with '.'"),
        ({"module": {"inline": {"main.exe": ""}}}, "must end in one of"),
        ({"module": {"inline": {"steward.auto.tfvars.json": "{}"}}}, "reserved"),
        ({"module": {"inline": {"main.tf": "", "x.tf.json": "{nope"}}}, "not valid JSON"),
        ({"module": {"inline": {"vars.tfvars": "a = 1"}}}, "no .tf or .tf.json file"),
        ({"module": {"inline": {"main.tf": ""}, "path": "/x"}}, "exactly one of inline or path"),
        ({"module": {}}, "exactly one of inline or path"),
        (
            {"module": {"path": "/x"}, "vars": {"bad name": 1}},
            "not a valid Terraform variable name",
        ),
        (
            {"module": {"path": "/x"}, "env": [{"name": "TF_DATA_DIR", "value": "/"}]},
            "set by Steward",
        ),
        (
            {"module": {"path": "/x"}, "varsFrom": [{"key": "a"}]},
            "exactly one of secretRef or configMapRef",
        ),
        (
            {"module": {"path": "/x"}, "backend": {"local": {}, "http": {"address": "http://h"}}},
            "at most one",
        ),
        ({"module": {"path": "/x"}, "binary": "pulumi"}, "binary"),
        ({"module": {"path": "/x"}, "applyTimeoutSeconds": 0}, "applyTimeoutSeconds"),
        ({"module": {"path": "/x"}, "drift": {}}, "drift"),
    ],
)
def test_spec_validation_names_the_field(terraform: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        ManagedService.parse({"metadata": {"name": "tf1"}, "spec": {"terraform": terraform}})
    text = str(info.value)
    assert needle in text
    assert "terraform" in text  # the location names the field


def test_spec_defaults() -> None:
    spec = TerraformSpec.model_validate({"module": {"inline": {"main.tf": ""}}})
    assert spec.destroy_on_stop is True
    assert spec.drift_detection.enabled is True
    assert spec.backend.kind == "local"
    assert spec.binary.value == "auto"
    assert spec.to_dict()["driftDetection"] == {
        "enabled": True,
        "intervalSeconds": 300.0,
        "action": "Reapply",
    }
