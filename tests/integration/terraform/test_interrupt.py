"""Long applies: interrupted by stop, killed mid-run, and the state locks they leave behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from steward.api.state import ServiceState
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.terraform.lock import Holder
from tests.support.terraform import SLOW, Background, MakeRT, StateServer, sleeps, spec_of, wait_for


def slow(seconds: float, **extra: Any) -> dict[str, Any]:
    return spec_of(SLOW, vars={"seconds": seconds}, endpointOutput="done", **extra)


def test_stop_interrupts_a_long_apply_and_destroys(make_rt: MakeRT) -> None:
    rt = make_rt(slow(61.25, stopGracePeriodSeconds=5))
    bg = Background(rt)
    wait_for(lambda: sleeps("61.25"), "the provisioner's sleep")
    obs = rt.observe()
    assert obs.state is ServiceState.PENDING_STARTUP
    assert obs.details["command"]["name"] == "apply"

    t0 = time.monotonic()
    rt.stop()
    assert time.monotonic() - t0 < 10
    err = bg.join()
    assert isinstance(err, RuntimeFailure) and err.reason == "TerraformInterrupted"
    assert not sleeps("61.25")
    assert rt.observe().state is ServiceState.INACTIVE
    log = "\n".join(rt.logs())
    assert "stop requested: interrupting terraform apply" in log
    assert "Destroy complete!" in log


def test_logs_follow_a_running_apply_to_its_end(make_rt: MakeRT) -> None:
    rt = make_rt(slow(1.75))
    bg = Background(rt)
    wait_for(lambda: sleeps("1.75"), "the provisioner's sleep")
    lines = list(rt.logs(tail=5, follow=True))  # returns when the apply sequence is over
    assert bg.join() is None
    text = "\n".join(lines)
    assert "Apply complete!" in text
    assert text.index("Executing:") < text.index("Apply complete!")


def test_forced_stop_still_lets_terraform_write_its_state(make_rt: MakeRT) -> None:
    rt = make_rt(slow(68.25))
    bg = Background(rt)
    wait_for(lambda: sleeps("68.25"), "the provisioner's sleep")
    rt.stop(force=True)
    assert isinstance(bg.join(), RuntimeFailure)
    log = "\n".join(rt.logs())
    assert "Interrupt received" in log, "Terraform should get SIGTERM (and a chance) first"
    assert "Destroy complete!" in log
    assert not sleeps("68.25")


def test_killed_mid_apply_then_recovers(tmp_path: Path, make_rt: MakeRT) -> None:
    rd = tmp_path / "rt"
    rt = make_rt(slow(62.25), runtime_dir=rd)
    bg = Background(rt)
    wait_for(lambda: sleeps("62.25"), "the provisioner's sleep")
    running = rt.runner.running
    assert running is not None
    os.kill(running.pid, signal.SIGKILL)  # the Terraform child we started, by PID
    err = bg.join()
    assert isinstance(err, RuntimeFailure) and err.reason == "TerraformKilled"
    wait_for(lambda: not sleeps("62.25"), "the orphaned sleep to be killed", 10)
    assert (rd / "holder.json").exists(), "the dead run's record is the evidence for its lock"
    assert rt.observe().state is ServiceState.ERROR

    again = make_rt(slow(0), runtime_dir=rd)
    again.start()
    obs = again.observe()
    assert obs.state is ServiceState.ACTIVE, obs.message
    log = "\n".join(again.logs())
    assert "died before finishing" in log
    assert "removed .terraform.tfstate.lock.info" in log
    assert "Apply complete!" in log.split("died before finishing", 1)[1]
    assert not (rd / "holder.json").exists()


SCRIPT = """
import json, sys
from pathlib import Path
from steward.api.terraform import TerraformSpec
from steward.runtimes.base import RuntimeContext, ServiceIdentity
from steward.runtimes.terraform import TerraformRuntime
spec = TerraformSpec.model_validate(json.loads(sys.argv[1]))
TerraformRuntime(spec, RuntimeContext(ServiceIdentity("t1", "tf1"), Path(sys.argv[2]))).start()
"""


def test_operator_killed_mid_apply_live_holder_is_respected(
    tmp_path: Path, make_rt: MakeRT
) -> None:
    """Steward dies, its Terraform child goes on: no second run meanwhile; stop still works."""
    rd = tmp_path / "rt"
    steward = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(slow(63.5)), str(rd)],
        stdin=subprocess.DEVNULL,
    )
    try:
        holder = wait_for(
            lambda: (h := Holder.load(rd / "holder.json")) and h.pid and sleeps("63.5") and h,
            "the apply to be running",
        )
        steward.kill()  # the "operator" we started dies; its Terraform child lives on
        steward.wait(10)
        assert holder.alive()

        rt = make_rt(slow(0), runtime_dir=rd)
        obs = rt.observe()
        assert obs.state is ServiceState.PENDING_STARTUP
        assert obs.reason == "TerraformBusy"
        assert obs.details["lock"]["holder"]["pid"] == holder.pid
        assert obs.details["lock"]["holder"]["alive"] is True
        with pytest.raises(RuntimeFailure) as info:
            rt.start()
        assert info.value.reason == "TerraformBusy"
        assert str(holder.pid) in str(info.value)

        rt.stop(grace=5)  # stops the orphaned run like its own, then destroys
        assert not holder.alive()
        assert rt.observe().state is ServiceState.INACTIVE
    finally:
        if steward.poll() is None:
            steward.kill()
        h = Holder.load(rd / "holder.json")
        if h is not None and h.pid and h.alive():
            os.killpg(h.pid, signal.SIGKILL)  # the child our child started: its own group

    wait_for(lambda: not sleeps("63.5"), "the dead run's sleep to go", 10)
    rt.start()
    assert rt.observe().state is ServiceState.ACTIVE
    assert "died before finishing" in "\n".join(rt.logs())


def test_stale_remote_lock_of_a_dead_run_is_force_unlocked(
    tmp_path: Path, state_server: StateServer, make_rt: MakeRT
) -> None:
    rd = tmp_path / "rt"
    rt = make_rt(slow(64.25, backend=state_server.backend()), runtime_dir=rd)
    bg = Background(rt)
    wait_for(lambda: sleeps("64.25"), "the provisioner's sleep")
    running = rt.runner.running
    assert running is not None and state_server.lock is not None
    os.kill(running.pid, signal.SIGKILL)
    err = bg.join()
    assert isinstance(err, RuntimeFailure) and err.reason == "TerraformKilled"
    stale_id = state_server.lock["ID"]  # what tofu-controller users unlock by hand

    again = make_rt(slow(0, backend=state_server.backend()), runtime_dir=rd)
    again.start()
    assert again.observe().state is ServiceState.ACTIVE
    assert state_server.lock is None
    log = "\n".join(again.logs())
    assert f"state lock {stale_id} belongs to terraform apply" in log
    assert "force-unlock" in log


def test_lock_of_a_live_holder_is_never_broken(
    tmp_path: Path, state_server: StateServer, make_rt: MakeRT
) -> None:
    owner = make_rt(slow(65.25, backend=state_server.backend()), name="owner")
    bg = Background(owner)
    wait_for(lambda: sleeps("65.25"), "the provisioner's sleep")
    held = state_server.lock
    assert held is not None

    other = make_rt(slow(0, backend=state_server.backend()), name="other")
    with pytest.raises(RuntimeFailure) as info:
        other.start()
    assert info.value.reason == "TerraformStateLocked"
    assert "Error acquiring the state lock" in str(info.value)
    obs = other.observe()
    assert obs.state is ServiceState.ERROR
    assert obs.details["lock"]["lock"]["id"] == held["ID"]
    assert state_server.lock == held, "a live holder's lock was broken"

    owner.stop(grace=5)
    assert isinstance(bg.join(), RuntimeFailure)
    assert state_server.lock is None
