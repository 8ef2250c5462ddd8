"""Through the real operator: start failures back off and Events aggregate.

Over 60 s with the default back-off (10 s doubling), a daemon whose command
does not exist and a container whose image cannot be pulled are attempted at
most 4 times each, and the API holds at most 3 Event objects for each (one per
distinct (type, reason, message), with a count). A `Never` service whose probe
fails is started exactly once and stays down, Stalled. A good service beside
them stays Ready throughout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import http_daemon_spec, msvc, never_unhealthy_spec

WINDOW = 60.0
ABSENT_IMAGE = "127.0.0.1:9/steward-test/absent:1"  # a local registry port that refuses


def events_of(kubectl: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), {})


def test_start_failures_back_off_and_events_aggregate(
    operator: Any, kubectl: Any, namespace: str, docker_images: Any
) -> None:
    broken = {
        "no-command": {"daemon": {"command": ["steward-no-such-binary"]}},
        "no-image": {"container": {"image": ABSENT_IMAGE, "imagePullPolicy": "IfNotPresent"}},
        "never-404": never_unhealthy_spec(period=1, initial_backoff=1),
    }
    apply(kubectl, namespace, msvc("good", http_daemon_spec()))
    for name, spec in broken.items():
        apply(kubectl, namespace, msvc(name, spec))
    wait_ready(kubectl, namespace, "good")
    started = time.monotonic()
    not_ready_good = 0
    while time.monotonic() - started < WINDOW:
        if condition(get(kubectl, namespace, "good"), "Ready").get("status") != "True":
            not_ready_good += 1
        time.sleep(2)

    report: dict[str, Any] = {}
    for name in ("no-command", "no-image"):
        obj = get(kubectl, namespace, name)
        events = events_of(kubectl, namespace, name)
        attempts = sum(
            int(e.get("count") or 1) for e in events if e["reason"] in ("Starting", "Restarting")
        )
        report[name] = {
            "attempts": attempts,
            "restarts": obj["status"]["restarts"],
            "eventObjects": len(events),
            "events": sorted((e["reason"], int(e.get("count") or 1)) for e in events),
            "reason": condition(obj, "Ready").get("reason"),
        }
        assert 2 <= attempts <= 4, report
        assert obj["status"]["restarts"] == attempts - 1, report
        assert len(events) <= 3, report
        assert obj["status"].get("nextRestartAt"), report
        assert condition(obj, "Reconciling").get("status") == "True", report
        assert condition(obj, "Stalled").get("status") == "False", report
    assert report["no-command"]["reason"] == "CommandNotFound"
    assert report["no-image"]["reason"] == "ImagePullBackOff"
    assert any(r == "ImagePullFailed" for r, _ in report["no-image"]["events"]), report

    never = get(kubectl, namespace, "never-404")
    never_events = events_of(kubectl, namespace, "never-404")
    starts = sum(int(e.get("count") or 1) for e in never_events if e["reason"] == "Started")
    report["never-404"] = sorted((e["reason"], int(e.get("count") or 1)) for e in never_events)
    assert starts == 1, report
    assert never["status"]["restarts"] == 0
    assert condition(never, "Ready").get("reason") == "Unhealthy"
    assert condition(never, "Stalled").get("status") == "True"
    assert not_ready_good == 0
    # kubectl get shows the reason (printer column)
    table = kubectl("get", "msvc", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert "REASON" in header
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    shown = readme.split("$ kubectl get msvc\n", 1)[1].splitlines()[0].split()
    assert shown == header, "the README's kubectl get output differs from the real columns"
    assert "CommandNotFound" in table and "ImagePullBackOff" in table, table
    print("\nBACK-OFF", json.dumps(report))
