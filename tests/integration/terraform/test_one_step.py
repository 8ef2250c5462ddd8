"""The event-loop step that applies also reports the outcome: no second reconcile, no extra command.

Both adapters drive ``Service.areconcile``. A Terraform start returns when the
apply is done, so the step that ran it must already show Ready with the
endpoint (before, a 50 ms sleep and another reconcile did), and only the
commands the work needs run: init + apply + output, then apply + output
after a variable change (the version is asked once per process).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from steward import Service, ServiceState
from tests.support.manifests import manifest
from tests.support.terraform import WEB, spec_of


def commands_in_log(svc: Service) -> list[str]:
    """The terraform subcommands the runtime ran, from its log's headers (in order)."""
    text = (svc.runtime_dir / "terraform.log").read_text()
    return re.findall(r"^=== \S+ terraform (\w[\w-]*)", text, re.M)


def test_apply_and_reapply_each_finish_in_one_step(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    def spec(name: str) -> dict[str, object]:
        return spec_of(
            WEB,
            vars={"name": name, "marker": str(tmp_path / "marker")},
            endpointOutput="url",
            binary="bundled",
        )

    svc = Service.from_manifest(
        manifest("onestep", {"terraform": spec("one")}), state_dir=state_dir
    )
    services.append(svc)
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        asyncio.run(svc.areconcile(pool))
        assert svc.status.state is ServiceState.ACTIVE, svc.status.last_error
        ready = svc.status.condition("Ready")
        assert ready is not None and ready.status == "True"
        assert svc.status.endpoint.uri == "http://127.0.0.1:9/one"
        assert commands_in_log(svc) == ["init", "apply", "output"]

        changed = manifest("onestep", {"terraform": spec("two")})
        changed["metadata"]["generation"] = 2
        assert svc.update(changed) is True
        asyncio.run(svc.areconcile(pool))
        assert svc.status.state is ServiceState.ACTIVE, svc.status.last_error
        assert svc.status.endpoint.uri == "http://127.0.0.1:9/two"
        assert svc.status.observed_generation == 2
        assert commands_in_log(svc)[3:] == ["apply", "output"]
        assert svc.status.runtime.get("initCount") == 1

        # Nothing changed: the next step only observes (no command, state kept).
        asyncio.run(svc.areconcile(pool))
        assert svc.status.state is ServiceState.ACTIVE
        assert len(commands_in_log(svc)) == 5
    finally:
        pool.shutdown(wait=True)
