"""`steward local`, `status` and `logs` as a user runs them: real subprocesses."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil

from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parents[3]
STEWARD = [sys.executable, "-m", "steward.cli"]


def steward(*args: str, state_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STEWARD, "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def until_ready(
    path: Path, *args: str, state_dir: Path, seconds: int = 60, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``steward local PATH --until-ready --timeout SECONDS ARGS``, which must exit 0."""
    res = steward(
        "local",
        str(path),
        "--until-ready",
        "--timeout",
        str(seconds),
        *args,
        state_dir=state_dir,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def read_until(out: IO[str], lines: list[str], deadline: float, *words: str) -> None:
    """Read OUT into LINES until a line holds every one of WORDS; fail at DEADLINE."""
    while time.monotonic() < deadline:
        line = out.readline()
        lines.append(line)
        if all(w in line for w in words):
            return
    raise AssertionError("".join(lines))


@contextlib.contextmanager
def steward_local(path: Path, state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """``steward local PATH`` in the background, its output on ``proc.stdout``; killed at
    the end if it still runs."""
    proc = subprocess.Popen(
        [*STEWARD, "--state-dir", str(state_dir), "local", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def write_daemon(path: Path, name: str, command: str) -> None:
    """A ManagedService file (its directory made if need be): daemon NAME running COMMAND
    (a YAML flow list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"apiVersion: steward.dev/v1alpha1\nkind: ManagedService\nmetadata: {{name: {name}}}\n"
        f"spec: {{daemon: {{command: {command}}}}}\n"
    )


def daemon_examples(tmp_path: Path) -> Path:
    """The examples that need neither Docker nor Terraform."""
    d = tmp_path / "examples"
    d.mkdir()
    for name in ("http-daemon.yaml", "python-callable.yaml", "env-from-secret.yaml"):
        shutil.copy(REPO / "examples" / name, d / name)
    return d


def test_local_until_ready_then_stops(tmp_path: Path, state_dir: Path) -> None:
    res = until_ready(daemon_examples(tmp_path), state_dir=state_dir)
    for name in ("http-daemon", "python-callable", "env-from-secret"):
        assert any(
            name in line and "Ready" in line and "active" in line and " healthy " in line
            for line in res.stdout.splitlines()
        ), res.stdout
    assert "s3cr3t-demo-token" not in res.stdout + res.stderr
    status = json.loads(steward("status", "-o", "json", state_dir=state_dir).stdout)
    assert {i["metadata"]["name"]: i["status"]["state"] for i in status["items"]} == {
        "http-daemon": "inactive",
        "python-callable": "inactive",
        "env-from-secret": "inactive",
    }


def test_local_leave_running_then_adopt(tmp_path: Path, state_dir: Path) -> None:
    ex = daemon_examples(tmp_path)
    until_ready(ex / "python-callable.yaml", "--leave-running", state_dir=state_dir)
    item = json.loads(
        steward("status", "python-callable", "-o", "json", state_dir=state_dir).stdout
    )["items"][0]
    pid = item["status"]["runtime"]["pid"]
    assert psutil.pid_exists(pid)
    # A second run adopts the same process and, this time, stops it on exit.
    until_ready(ex / "python-callable.yaml", state_dir=state_dir)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    logs = steward("logs", "python-callable", "--tail", "50", state_dir=state_dir)
    assert "listening on 127.0.0.1" in logs.stdout


def test_bad_manifest_is_one_clear_line_and_exit_2(tmp_path: Path, state_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: steward.dev/v1alpha1\nkind: ManagedService\nmetadata: {name: bad}\n"
        "spec: {daemon: {command: [x]}, endpoint: {port: 70000}}\n"
    )
    res = steward("local", str(bad), "--until-ready", "--timeout", "5", state_dir=state_dir)
    assert res.returncode == 2
    errors = [line for line in res.stdout.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {bad}: spec.endpoint.port: Input should be less than or equal to 65535"
    ]


def test_missing_path_exit_2(state_dir: Path) -> None:
    res = steward("local", "/nonexistent/x.yaml", state_dir=state_dir)
    assert res.returncode == 2 and "no such file" in res.stderr


def test_ctrl_c_stops_services_and_file_edits_are_picked_up(
    tmp_path: Path, state_dir: Path
) -> None:
    ex = tmp_path / "ex"
    write_daemon(ex / "a.yaml", "sleeper", "[sleep, '600']")
    with steward_local(ex, state_dir) as proc:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert proc.stdout is not None
        read_until(proc.stdout, lines, deadline, "default/sleeper", "Ready")
        write_daemon(ex / "b.yaml", "second", "[sleep, '601']")
        read_until(proc.stdout, lines, deadline, "default/second", "Ready")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "default/sleeper: stopping" in out and "default/second: stopping" in out


def test_every_example_in_local_mode(tmp_path: Path, state_dir: Path) -> None:
    """All examples, Docker and Terraform ones included, reach Ready without a cluster."""
    import docker

    from tests.support.containers import run_docker_script

    assert run_docker_script("ensure-dockerd.sh", 120) is not None
    images = dict(
        line.split("=", 1)
        for line in (run_docker_script("build-test-images.sh", 900).stdout or "").split()
        if "=" in line
    )  # type: ignore[union-attr]
    client = docker.from_env()
    created = False
    try:
        client.images.get("busybox:1.36")
    except docker.errors.ImageNotFound:
        client.images.get(images["STEWARD_TEST_BUSYBOX_IMAGE"]).tag("busybox", "1.36")
        created = True
    try:
        res = until_ready(REPO / "examples", state_dir=state_dir, seconds=120, timeout=240)
        ready = {
            line.split()[0]
            for line in res.stdout.splitlines()
            if " Ready" in line and "active" in line
        }
        assert {
            "default/http-daemon",
            "default/python-callable",
            "default/env-from-secret",
            "default/web-container",
            "default/terraform-module",
        } <= ready, res.stdout
    finally:
        if created:
            client.images.remove("busybox:1.36", noprune=True)
        client.close()


def test_a_changed_secret_in_the_files_replaces_the_daemon(tmp_path: Path, state_dir: Path) -> None:
    """Local mode re-checks referenced Secrets, like the operator: the new value is used."""
    ex = tmp_path / "ex"
    ex.mkdir()
    seen = tmp_path / "seen.txt"

    def write(token: str) -> None:
        (ex / "svc.yaml").write_text(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: tok, namespace: default}\n"
            f"stringData: {{token: {token}}}\n---\n"
            "apiVersion: steward.dev/v1alpha1\nkind: ManagedService\n"
            "metadata: {name: reader, namespace: default}\n"
            'spec:\n  daemon:\n    command: [sh, -c, \'echo "$TOKEN" > "$OUT"; exec sleep 600\']\n'
            f"    env:\n      - {{name: OUT, value: '{seen}'}}\n"
            "      - {name: TOKEN, valueFrom: {secretKeyRef: {name: tok, key: token}}}\n"
        )

    write("first-value")
    with steward_local(ex, state_dir) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            seen.exists() and seen.read_text().strip() == "first-value"
        ):
            time.sleep(0.1)
        assert seen.read_text().strip() == "first-value"
        time.sleep(1.1)  # a distinct mtime for the watcher
        write("second-value")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen.read_text().strip() != "second-value":
            time.sleep(0.1)
        assert seen.read_text().strip() == "second-value", "the daemon kept the old Secret"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "second-value" not in out and "first-value" not in out, "a Secret was printed"


def test_scripts_get_json_or_quiet_and_status_shows_reason_and_next_attempt(
    tmp_path: Path, state_dir: Path
) -> None:
    ex = tmp_path / "ex"
    write_daemon(ex / "broken.yaml", "broken", "[steward-no-such-binary]")
    res = steward("local", str(ex), "--timeout", "2", "-o", "json", state_dir=state_dir)
    objs = [json.loads(line) for line in res.stdout.splitlines()]  # every line is JSON
    rows = [o for o in objs if "state" in o]
    assert rows[0]["name"] == "default/broken" and rows[0]["endpoint"] == ""
    assert any(r["reason"] == "CommandNotFound" and r["nextAttempt"] for r in rows), objs
    events = [o["event"] for o in objs if "event" in o]
    assert [e["reason"] for e in events] == ["CommandNotFound"], objs
    quiet = steward("local", str(ex), "--timeout", "2", "--quiet", state_dir=state_dir)
    assert quiet.stdout == "", quiet.stdout
    # a new run says what is failing even though the first run already warned about it
    assert "default/broken: CommandNotFound: command not found" in quiet.stderr
    assert "next attempt at" in quiet.stderr
    table = steward("status", state_dir=state_dir).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "STATE", "ENDPOINT", "HEALTH", "READY", "REASON"]
    assert "CommandNotFound" in table[1] and "next attempt at" in table[1], table


def test_a_crash_restarted_at_once_still_shows(tmp_path: Path, state_dir: Path) -> None:
    """Back-off 0: the run that ended is restarted in the same step, and the status written
    in between (not active, one more restart) still shows it: a crash never vanishes."""
    ex = tmp_path / "ex"
    ex.mkdir()
    (ex / "c.yaml").write_text(
        "apiVersion: steward.dev/v1alpha1\nkind: ManagedService\nmetadata: {name: crasher}\n"
        "spec:\n  daemon: {command: [sleep, '602']}\n  backoff: {initialSeconds: 0}\n"
    )
    with steward_local(ex, state_dir) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
        reader.start()  # a row that never comes fails at the deadline, not in a blocked read

        def rows() -> list[str]:
            return [ln for ln in list(lines) if ln.startswith("default/crasher ")]

        wait_for(lambda: any("Ready" in ln for ln in rows()), 30, what="the first Ready row")
        sleeper = [
            p for p in psutil.Process(proc.pid).children(recursive=True)
            if p.cmdline() == ["sleep", "602"]
        ]  # fmt: skip
        assert len(sleeper) == 1, lines
        shown = len(rows())
        sleeper[0].kill()
        wait_for(lambda: any("Ready" not in ln for ln in rows()[shown:]), 10, what="the crash")
        wait_for(lambda: "Ready" in rows()[-1], 10, what="Ready again after the restart")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
