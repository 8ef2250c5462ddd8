"""The operator with the daemon flavor, driven only through kubectl."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import requests

from tests.support.kubectl import apply, get, patch, wait_ready
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.processes import alive
from tests.support.waits import wait_for


def test_apply_wait_ready_status_and_columns(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    apply(kubectl, namespace, msvc("web", http_daemon_spec()))
    obj = wait_ready(kubectl, namespace, "web")
    st = obj["status"]
    assert st["state"] == "active"
    assert st["health"]["state"] == "healthy"
    assert st["endpoint"]["uri"] == f"http://127.0.0.1:{st['endpoint']['port']}"
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["observedGeneration"] == obj["metadata"]["generation"]
    assert requests.get(st["endpoint"]["uri"], timeout=5).status_code == 200
    table = kubectl("get", "msvc", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "TYPE",
        "STATE",
        "ENDPOINT",
        "HEALTH",
        "READY",
        "REASON",
        "NODE",
        "AGE",
    ]
    assert table[1].split()[:7] == [
        "web",
        "daemon",
        "active",
        st["endpoint"]["uri"],
        "healthy",
        "True",
        "Ready",
    ]
    assert len(table[1].split()) == 8  # NODE blank: steward run is one host, nothing bound
    # kopf's bookkeeping stays out of status and spec is never written by the operator
    assert "kopf" not in st
    assert obj["metadata"]["finalizers"] == ["steward.dev/finalizer"]
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert {"Started", "Ready"} <= {
        e["reason"] for e in events if e["involvedObject"]["name"] == "web"
    }
    describe = kubectl("describe", "msvc", "web", "-n", namespace).stdout
    assert "Started" in describe
    metrics = requests.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    assert 'steward_services{flavor="daemon",state="active"} 1.0' in metrics
    assert 'steward_reconciles_total{flavor="daemon"}' in metrics
    assert "steward_probe_latency_seconds_bucket" in metrics


def test_update_replaces_and_admin_state_toggles(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    apply(kubectl, namespace, msvc("web", http_daemon_spec()))
    pid = wait_ready(kubectl, namespace, "web")["status"]["runtime"]["pid"]
    # spec change -> generation bump -> the process is replaced
    apply(kubectl, namespace, msvc("web", http_daemon_spec(["--directory", "/"])))
    obj = wait_for(
        lambda: (
            (o := get(kubectl, namespace, "web"))["status"].get("observedGeneration") == 2
            and o["status"]["state"] == "active"
            and o
        )
    )
    new_pid = obj["status"]["runtime"]["pid"]
    assert new_pid != pid and not alive(pid) and alive(new_pid)
    # status-only changes trigger no work: the pid stays
    kubectl("annotate", "msvc", "web", "-n", namespace, "note=hello")
    time.sleep(2)
    assert get(kubectl, namespace, "web")["status"]["runtime"]["pid"] == new_pid
    # adminState inactive stops it and keeps the resource
    patch(kubectl, namespace, "web", {"spec": {"adminState": "inactive"}})
    wait_for(lambda: get(kubectl, namespace, "web")["status"]["state"] == "inactive")
    assert not alive(new_pid)
    ready = next(
        c for c in get(kubectl, namespace, "web")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "Stopped")
    patch(kubectl, namespace, "web", {"spec": {"adminState": "active"}})
    assert alive(wait_ready(kubectl, namespace, "web")["status"]["runtime"]["pid"])


def test_delete_policies(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    apply(kubectl, namespace, msvc("gone", http_daemon_spec()))
    orphan_spec = {**http_daemon_spec(), "deletionPolicy": "Orphan"}
    apply(kubectl, namespace, msvc("kept", orphan_spec))
    gone = wait_ready(kubectl, namespace, "gone")["status"]["runtime"]["pid"]
    kept = wait_ready(kubectl, namespace, "kept")["status"]["runtime"]["pid"]
    kubectl("delete", "msvc", "gone", "kept", "-n", namespace, "--timeout=60s")
    assert not alive(gone)
    try:
        assert alive(kept), "deletionPolicy Orphan must leave the process running"
    finally:
        os.kill(kept, signal.SIGTERM)
        wait_for(lambda: not alive(kept), timeout=10)


def test_runtime_failure_is_ready_false_with_reason_and_event_others_stay_ready(
    operator, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    apply(kubectl, namespace, msvc("good", http_daemon_spec()))
    apply(kubectl, namespace, msvc("bad", {"daemon": {"command": ["no-such-binary-xyz"]}}))
    wait_ready(kubectl, namespace, "good")

    def bad_reason() -> str | None:
        st = get(kubectl, namespace, "bad").get("status") or {}
        ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
        return (
            ready.get("reason") if ready.get("status") == "False" and st.get("lastError") else None
        )

    assert wait_for(bad_reason) == "CommandNotFound"
    st = get(kubectl, namespace, "bad")["status"]
    assert st["state"] == "error" and st["lastError"] == "command not found: no-such-binary-xyz"
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(
        e["reason"] == "CommandNotFound"
        and e["type"] == "Warning"
        and e["involvedObject"]["name"] == "bad"
        for e in events
    )
    assert get(kubectl, namespace, "good")["status"]["state"] == "active"


def test_operator_sigkill_and_restart_adopts_without_duplicates(
    operator, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        apply(kubectl, namespace, msvc(f"svc{i}", http_daemon_spec()))
    pids = {
        i: wait_ready(kubectl, namespace, f"svc{i}")["status"]["runtime"]["pid"] for i in range(3)
    }
    operator.kill()
    # while the operator is down, one workload dies
    os.kill(pids[0], signal.SIGKILL)
    operator.start()
    wait_for(
        lambda: (
            get(kubectl, namespace, "svc0")["status"]["runtime"].get("pid") not in (None, pids[0])
            and get(kubectl, namespace, "svc0")["status"]["state"] == "active"
        ),
        timeout=90,
    )
    for i in (1, 2):
        assert get(kubectl, namespace, f"svc{i}")["status"]["runtime"]["pid"] == pids[i]
    servers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and "http.server" in p.info["cmdline"]
        and p.info["cmdline"][-2:] == ["--bind", "127.0.0.1"]
    ]
    ours = [
        p
        for p in servers
        if p.pid in pids.values()
        or p.pid == get(kubectl, namespace, "svc0")["status"]["runtime"]["pid"]
    ]
    assert len(ours) == 3


def test_env_from_secret_never_leaks(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    token = "e2e-super-secret-value-123"
    kubectl("create", "secret", "generic", "tok", "-n", namespace, f"--from-literal=token={token}")
    spec = {
        "daemon": {
            "python": {
                "callable": "steward.examples_app:serve",
                "kwargs": {"port": "$(PORT)", "greeting": "hi", "require_env": "TOKEN"},
            },
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}}
            ],
        },
        "endpoint": {"protocol": "http", "healthCheck": {"http": {"path": "/healthz"}}},
    }
    apply(kubectl, namespace, msvc("secretive", spec))
    obj = wait_ready(kubectl, namespace, "secretive")
    pid = obj["status"]["runtime"]["pid"]
    assert psutil.Process(pid).environ()["TOKEN"] == token
    # Changing the Secret is picked up: the workload restarts with the new value.
    rotated = "e2e-rotated-secret-value-456"
    patch(kubectl, namespace, "tok", {"stringData": {"token": rotated}}, kind="secret")
    new_pid = wait_for(
        lambda: (
            (p := get(kubectl, namespace, "secretive")["status"]["runtime"].get("pid"))
            not in (None, pid)
            and alive(p)
            and p
        ),
        timeout=60,
    )
    assert psutil.Process(new_pid).environ()["TOKEN"] == rotated
    everything = (
        kubectl("get", "msvc,events", "-n", namespace, "-o", "yaml").stdout + operator.logs()
    )
    assert token not in everything and rotated not in everything
