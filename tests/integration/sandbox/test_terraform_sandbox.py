"""Terraform in a sandbox: every command, local-exec included, as the service's uid; 0600 state."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from steward.api.terraform import TerraformSpec
from steward.runtimes.base import RuntimeContext, ServiceIdentity
from steward.runtimes.sandbox import Sandbox, UidAllocator
from steward.runtimes.terraform import TerraformRuntime

MAIN_TF = """
resource "terraform_data" "who" {
  provisioner "local-exec" {
    command = "echo \\"$(id -u) $(id -g) $HOME $${STEWARD_TEST_SESSION:-clean}\\" > who.txt"
  }
}
output "hello" { value = "world" }
"""


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary on PATH")
def test_terraform_commands_run_as_the_sandbox_uid(
    sandbox_root: Path, allocator: UidAllocator
) -> None:
    uid = allocator.allocate("team/infra")
    sandbox = Sandbox(uid=uid, gid=uid, state_root=sandbox_root)
    ctx = RuntimeContext(
        identity=ServiceIdentity("team", "infra"),
        runtime_dir=sandbox_root / "services/team/infra/runtime",
        sandbox=sandbox,
    )
    spec = TerraformSpec.model_validate(
        {"module": {"inline": {"main.tf": MAIN_TF}}, "binary": "terraform"}
    )
    rt = TerraformRuntime(spec, ctx)
    try:
        rt.start()
        obs = rt.observe()
        assert obs.state.value == "active", (obs.message, "\n".join(rt.logs()))
        who = (rt.ws.module_dir / "who.txt").read_text().split()
        assert who == [str(uid), str(uid), str(ctx.runtime_dir / "home"), "clean"]
        state = rt.ws.state_dir / "terraform.tfstate"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600 and state.stat().st_uid == uid
        assert stat.S_IMODE(rt.ws.state_dir.stat().st_mode) == 0o700
        assert json.loads(state.read_text())["outputs"]["hello"]["value"] == "world"
        for f in (rt.ws.record_path, rt.ws.log_path):
            assert f.stat().st_uid == 0  # the operator's bookkeeping stays its own
        assert os.stat(ctx.runtime_dir).st_uid == 0
    finally:
        rt.stop()
        rt.close()
    assert rt.observe().state.value == "inactive"
