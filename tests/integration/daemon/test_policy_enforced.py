"""The engine enforces the admin's policy before anything starts, whatever admission did."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from steward import Service
from steward.api import reasons as R
from steward.api.manifest import ManagedService
from steward.engine.policy import check
from tests.support.manifests import manifest

POLICY = {
    "apiVersion": "steward.dev/v1alpha1",
    "kind": "StewardPolicy",
    "metadata": {"name": "team-a"},
    "spec": {"namespaceSelector": {}, "daemon": {"commands": ["/usr/bin/"]}},
}


def team_a(ms: ManagedService) -> list[str]:
    return [v.message for v in check([POLICY], {"team": "a"}, ms)]


def test_a_denied_daemon_never_starts_and_stays_down(
    state_dir: Path, services: list[Service]
) -> None:
    events: list[tuple[str, str, str]] = []
    spec = {"daemon": {"command": [sys.executable, "-c", "open('ran', 'w')"]}}
    svc = Service.from_manifest(
        manifest("outside", spec),
        state_dir=state_dir,
        policy=team_a,
        events=lambda *e: events.append(e),
    )
    services.append(svc)
    assert svc.start(timeout=2) is False
    for _ in range(5):  # no back-off retries: a human must change the spec or the policy
        svc.reconcile()
        time.sleep(0.05)
    assert not svc.runtime.observe().running
    assert not (svc.runtime_dir / "ran").exists()
    ready, stalled = svc.status.condition("Ready"), svc.status.condition(R.STALLED)
    assert ready is not None and (ready.status, ready.reason) == ("False", R.POLICY_DENIED)
    assert "daemon-command" in ready.message and "StewardPolicy team-a" in ready.message
    assert stalled is not None and stalled.status == "True"
    assert svc.status.next_restart_at is None and svc.status.restarts == 0
    warnings = [e for e in events if e[0] == "Warning"]
    assert [w[1] for w in warnings] == [R.POLICY_DENIED]


def test_an_allowed_daemon_runs(state_dir: Path, services: list[Service]) -> None:
    svc = Service.from_manifest(
        manifest("inside", {"daemon": {"command": ["/usr/bin/sleep", "30"]}}),
        state_dir=state_dir,
        policy=team_a,
    )
    services.append(svc)
    assert svc.start(timeout=5) is True
