"""Start failures back off like crashes, and speak once: library and `steward local`.

A daemon whose command does not exist and a container whose image cannot be
pulled (a registry on 127.0.0.1 that refuses, `imagePullPolicy: IfNotPresent`)
are driven for 60 s with the default back-off (10 s doubling): at most 4
attempts each, one Warning per distinct failure, and in `steward local` the
failure row at most once per attempt. Both modes run in the same 60 s.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from steward import Service
from steward.api import reasons as R
from tests.support.containers import Images, unique_name
from tests.support.manifests import manifest, never_unhealthy_spec

WINDOW = 60.0
MAX_ATTEMPTS = 4  # t = 0, 10, 30 (and 70, outside the window): 3 expected, 4 allowed
ABSENT_IMAGE = "127.0.0.1:9/steward-test/absent:1"  # port 9 (discard) is closed: refused at once

Counts = collections.Counter[tuple[str, str]]


def broken_specs() -> dict[str, dict[str, Any]]:
    return {
        "no-command": {"daemon": {"command": ["no-such-binary-steward-test"]}},
        "no-image": {"container": {"image": ABSENT_IMAGE, "imagePullPolicy": "IfNotPresent"}},
    }


def supervise(svc: Service, stop: threading.Event) -> None:
    while not stop.is_set():
        stop.wait(svc.reconcile())


def test_start_failures_back_off_in_library_and_local_mode(
    docker_images: Images, tmp_path: Path, state_dir: Path, services: list[Service]
) -> None:
    # steward local over the same two specs, under other names, in its own state dir
    files = tmp_path / "manifests"
    files.mkdir()
    local_names = {kind: unique_name(f"local-{kind}") for kind in broken_specs()}
    for kind, spec in broken_specs().items():
        (files / f"{kind}.yaml").write_text(yaml.safe_dump(manifest(local_names[kind], spec)))
    local = subprocess.Popen(
        [
            *(sys.executable, "-m", "steward.cli", "--state-dir", str(tmp_path / "local-state")),
            *("local", str(files), "--timeout", str(WINDOW)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    events: dict[str, Counts] = {}
    lib: dict[str, Service] = {}
    for kind, spec in broken_specs().items():
        counts: Counts = collections.Counter()
        events[kind] = counts

        def sink(type_: str, reason: str, message: str, counts: Counts = counts) -> None:
            counts[(type_, reason)] += 1

        svc = Service.from_manifest(
            manifest(unique_name(f"lib-{kind}"), spec), state_dir=state_dir, events=sink
        )
        services.append(svc)
        lib[kind] = svc
    stop = threading.Event()
    threads = [threading.Thread(target=supervise, args=(s, stop)) for s in lib.values()]
    for t in threads:
        t.start()
    try:
        out, _ = local.communicate(timeout=WINDOW + 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if local.poll() is None:
            local.kill()
            local.wait()

    report = {}
    for kind, svc in lib.items():
        c = events[kind]
        attempts = c[("Normal", R.STARTING)] + c[("Normal", R.RESTARTING)]
        warnings = sum(n for (type_, _), n in c.items() if type_ == "Warning")
        report[kind] = (attempts, warnings, svc.status.restarts, dict(c))
        assert 2 <= attempts <= MAX_ATTEMPTS, report
        assert svc.status.restarts == attempts - 1, report
        assert warnings == 1, report  # one per distinct failure, not per attempt
        ready = svc.status.condition("Ready")
        assert ready is not None and ready.status == "False"
        assert svc.status.next_restart_at is not None
    assert lib["no-command"].status.condition("Ready").reason == R.COMMAND_NOT_FOUND  # type: ignore[union-attr]
    no_image = lib["no-image"].status
    assert no_image.condition("Ready").reason == R.IMAGE_PULL_BACK_OFF  # type: ignore[union-attr]
    assert events["no-image"][("Warning", R.IMAGE_PULL_FAILED)] == 1
    assert "cannot pull image" in no_image.last_error and "back-off" not in no_image.last_error

    # steward local: a row per service from the start; the failure once per attempt at most
    lines = out.splitlines()
    for name in local_names.values():
        key = f"default/{name}"
        rows = [ln for ln in lines if ln.startswith(key + " ")]
        assert rows, out
        failure_rows = [ln for ln in rows if " error " in ln]
        warning_lines = [ln for ln in lines if ln.startswith(f"{key}: ")]
        assert 1 <= len(failure_rows) <= MAX_ATTEMPTS, out
        assert len(warning_lines) == 1, out
        assert all("next attempt at" in ln for ln in failure_rows), out
    print("\nattempts, warnings, restarts per library service:", report)
    print(f"steward local printed {len(lines)} lines in {WINDOW:.0f}s")


def test_never_with_a_failing_probe_is_started_exactly_once(
    state_dir: Path, services: list[Service]
) -> None:
    """restartPolicy Never: stopped for failing its probe, and never started again."""
    counts: Counts = collections.Counter()

    def sink(type_: str, reason: str, message: str) -> None:
        counts[(type_, reason)] += 1

    spec = never_unhealthy_spec(period=0.2, initial_backoff=0.1)
    svc = Service.from_manifest(manifest("never-404", spec), state_dir=state_dir, events=sink)
    services.append(svc)
    stop = threading.Event()
    t = threading.Thread(target=supervise, args=(svc, stop))
    t.start()
    time.sleep(6)
    stop.set()
    t.join(timeout=30)
    assert counts[("Normal", R.STARTED)] == 1, counts
    assert counts[("Normal", R.RESTARTING)] == 0, counts
    assert svc.status.restarts == 0
    assert not svc.runtime.observe().running
    ready = svc.status.condition("Ready")
    stalled = svc.status.condition(R.STALLED)
    assert ready is not None and (ready.status, ready.reason) == ("False", R.UNHEALTHY)
    assert stalled is not None and stalled.status == "True"
    assert svc.status.next_restart_at is None
