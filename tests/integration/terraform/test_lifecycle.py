"""Apply, outputs, endpoint, init caching, adoption and destroy on a real Terraform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steward.api.state import ServiceState
from steward.runtimes.base import Adoption
from tests.support.terraform import WEB, MakeRT, spec_of


def web(tmp_path: Path, name: str = "abc", **extra: object) -> dict[str, object]:
    return spec_of(
        WEB,
        vars={"name": name, "marker": str(tmp_path / "marker.txt")},
        endpointOutput="url",
        **extra,
    )


@pytest.mark.parametrize("binary", ["bundled", "path"])
def test_apply_outputs_endpoint_and_destroy(
    binary: str, tmp_path: Path, make_rt: MakeRT, request: pytest.FixtureRequest
) -> None:
    extra = {"binary": "bundled"}
    if binary == "path":
        extra = {"binaryPath": request.getfixturevalue("path_binary")}
    rt = make_rt(web(tmp_path, **extra))
    assert rt.adopt() is Adoption.NOTHING
    assert rt.observe().state is ServiceState.INACTIVE

    rt.start()

    obs = rt.observe()
    assert obs.state is ServiceState.ACTIVE, obs.message
    assert obs.endpoint_uri == "http://127.0.0.1:9/abc"
    assert obs.details["outputs"] == {
        "url": "http://127.0.0.1:9/abc",
        "info": {"name": "abc", "n": 3},
    }
    assert obs.details["sensitiveOutputs"] == ["token"]
    assert obs.details["binary"]["kind"] == (
        "bundled" if binary == "bundled" else Path(extra["binaryPath"]).name
    )
    assert obs.details["binary"]["version"]
    assert (tmp_path / "marker.txt").read_text().strip() == "up-abc"
    assert rt.outputs(include_sensitive=True)["token"] == "tok-abc-5ecret"
    log = "\n".join(rt.logs())
    assert "Apply complete!" in log and "terraform apply -auto-approve" in log

    rt.stop()

    assert not (tmp_path / "marker.txt").exists(), "destroy-time provisioner did not run"
    obs = rt.observe()
    assert obs.state is ServiceState.INACTIVE
    assert obs.endpoint_uri is None
    assert "Destroy complete!" in "\n".join(rt.logs(tail=20))
    rt.stop()  # idempotent: nothing left to destroy


def test_sensitive_output_never_reported_or_logged(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(web(tmp_path, name="zeta"))
    rt.start()
    rt.check_drift()
    obs = rt.observe()
    secret = "tok-zeta-5ecret"
    assert secret not in json.dumps(obs.details) + obs.message + repr(obs)
    assert secret not in "\n".join(rt.logs())
    assert secret not in (rt.ctx.runtime_dir / "terraform.json").read_text()
    assert secret not in repr(rt.spec) + repr(rt)
    assert rt.redact(f"leaked {secret}!") == "leaked ***!"


def test_init_only_when_module_or_backend_changes(tmp_path: Path, make_rt: MakeRT) -> None:
    rd = tmp_path / "rt"
    rt = make_rt(web(tmp_path), runtime_dir=rd)
    rt.start()
    rt.start()
    assert rt.observe().details["initCount"] == 1

    # Another runtime object (a restarted operator) on the same directory: still no init.
    again = make_rt(web(tmp_path, name="other-vars"), runtime_dir=rd)
    again.start()
    assert again.observe().details["initCount"] == 1, "a vars-only change must not re-init"
    assert again.observe().endpoint_uri == "http://127.0.0.1:9/other-vars"

    changed = web(tmp_path, name="other-vars")
    changed["module"] = {"inline": {"main.tf": WEB + '\noutput "extra" { value = 1 }\n'}}
    third = make_rt(changed, runtime_dir=rd)
    third.start()
    obs = third.observe()
    assert obs.details["initCount"] == 2
    assert obs.details["outputs"]["extra"] == 1
    third.start()
    assert third.observe().details["initCount"] == 2


def test_backend_change_reinitialises_and_migrates_state(
    tmp_path: Path, state_server: object, make_rt: MakeRT
) -> None:
    rd = tmp_path / "rt"
    rt = make_rt(web(tmp_path), runtime_dir=rd)
    rt.start()
    moved = make_rt(web(tmp_path, backend=state_server.backend()), runtime_dir=rd)  # type: ignore[attr-defined]
    moved.start()
    obs = moved.observe()
    assert obs.details["initCount"] == 2
    assert obs.details["backend"] == "http"
    assert state_server.state and b"terraform_data" in state_server.state  # type: ignore[attr-defined]
    assert "1 added" not in "\n".join(moved.logs(tail=30)), (
        "state was not migrated: resources recreated"
    )


def test_path_module_is_copied_and_tracked(tmp_path: Path, make_rt: MakeRT) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "main.tf").write_text(
        'module "sub" {\n  source = "./sub"\n}\noutput "url" { value = module.sub.url }\n'
    )
    (src / "sub" / "main.tf").write_text('output "url" { value = "tcp://127.0.0.1:7" }\n')
    rt = make_rt({"module": {"path": str(src)}, "endpointOutput": "url"})
    rt.start()
    assert rt.observe().endpoint_uri == "tcp://127.0.0.1:7"
    (src / "sub" / "main.tf").write_text('output "url" { value = "tcp://127.0.0.1:8" }\n')
    rt.start()
    obs = rt.observe()
    assert obs.endpoint_uri == "tcp://127.0.0.1:8"
    assert obs.details["initCount"] == 2


def test_adopt_same_spec_adopted_other_spec_outdated(tmp_path: Path, make_rt: MakeRT) -> None:
    rd = tmp_path / "rt"
    first = make_rt(web(tmp_path), runtime_dir=rd, spec_hash="h1")
    first.start()
    first.close()

    same = make_rt(web(tmp_path), runtime_dir=rd, spec_hash="h1")
    assert same.adopt() is Adoption.ADOPTED
    obs = same.observe()
    assert obs.state is ServiceState.ACTIVE
    assert obs.endpoint_uri == "http://127.0.0.1:9/abc", "adoption must not need a re-apply"
    assert "\n".join(same.logs()).count("terraform apply") == 1

    # The new spec has no resource at all: destroying must use the applied module,
    # whose destroy-time provisioner removes the marker.
    other = make_rt(spec_of('output "url" { value = "x" }\n'), runtime_dir=rd, spec_hash="h2")
    assert other.adopt() is Adoption.OUTDATED
    assert (tmp_path / "marker.txt").exists()
    other.stop()
    assert not (tmp_path / "marker.txt").exists()
    gone = make_rt(web(tmp_path), runtime_dir=rd, spec_hash="h1")
    assert gone.adopt() is Adoption.NOTHING


def test_destroy_on_stop_false_keeps_resources(tmp_path: Path, make_rt: MakeRT) -> None:
    rt = make_rt(web(tmp_path, destroyOnStop=False))
    rt.start()
    rt.stop()
    assert (tmp_path / "marker.txt").exists()
    obs = rt.observe()
    assert obs.state is ServiceState.INACTIVE
    assert "kept" in obs.message
    rt.start()  # converges on the kept state: nothing to add
    assert rt.observe().state is ServiceState.ACTIVE
    assert "0 added" in "\n".join(rt.logs(tail=40))
