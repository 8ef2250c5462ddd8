"""How the engine drives Terraform: changes re-apply in place; stop interrupts a long apply."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from steward import Service, ServiceState
from tests.support.manifests import manifest
from tests.support.terraform import SLOW, WEB, sleeps, spec_of, wait_for


def test_spec_change_reapplies_in_place_without_destroy(
    state_dir: Path, tmp_path: Path, services: list[Service]
) -> None:
    marker = tmp_path / "marker"
    spec = spec_of(
        WEB, vars={"name": "one", "marker": str(marker)}, endpointOutput="url", binary="bundled"
    )
    svc = Service.from_manifest(manifest("tfup", {"terraform": spec}), state_dir=state_dir)
    services.append(svc)
    assert svc.start(timeout=120), svc.status.last_error
    assert svc.status.endpoint.uri == "http://127.0.0.1:9/one"
    destroyed = []
    spec2 = spec_of(
        WEB, vars={"name": "two", "marker": str(marker)}, endpointOutput="url", binary="bundled"
    )
    assert svc.update(manifest("tfup", {"terraform": spec2})) is True
    watcher_stop = threading.Event()

    def watch() -> None:  # a destroy-then-create would remove the marker for a moment
        while not watcher_stop.is_set():
            if not marker.exists():
                destroyed.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=watch)
    t.start()
    try:
        wait_for(
            lambda: (
                svc.reconcile() is not None and svc.status.endpoint.uri == "http://127.0.0.1:9/two"
            ),
            "re-apply",
            timeout=120,
        )
    finally:
        watcher_stop.set()
        t.join()
    assert svc.status.state is ServiceState.ACTIVE
    # terraform_data updates `input` in place: no destroy provisioner ran (it would
    # have removed the marker) and the create provisioner did not run again.
    assert destroyed == []
    assert marker.read_text().strip() == "up-one"
    assert svc.runtime.observe().details.get("initCount") == 1


def test_stop_interrupts_a_long_apply(state_dir: Path, services: list[Service]) -> None:
    spec = spec_of(SLOW, vars={"seconds": 301.75}, binary="bundled", stopGracePeriodSeconds=5)
    svc = Service.from_manifest(manifest("tfslow", {"terraform": spec}), state_dir=state_dir)
    services.append(svc)
    starter = threading.Thread(target=svc.start, kwargs={"timeout": 600})
    starter.start()
    wait_for(lambda: sleeps("301.75"), "the apply's sleep to run", timeout=60)
    t0 = time.monotonic()
    assert svc.stop(timeout=60)
    elapsed = time.monotonic() - t0
    starter.join(timeout=30)
    assert not starter.is_alive()
    assert elapsed < 30, elapsed
    assert not sleeps("301.75")
    assert svc.status.state is ServiceState.INACTIVE
