"""Tenants attack through `kubectl apply` only, against the real operator process.

Two tenant namespaces share one operator. With --sandbox, tenant B's daemon tries
to read the operator's environment, its kubeconfig and /proc, tenant A's Secret
from A's /proc/PID/environ and A's pid file; a fork bomb, a memory hog and a
double-forking daemon follow. With --enforce-policy (no admission policy
installed: the operator is the last check), tenant B asks for a singleton, an
Orphan, a blocking daemon, writes Terraform outputs over a Secret it does not own
and floods its log. Each attack is refused (Ready=False PolicyDenied, one Event
naming the rule) or contained, and tenant A's service stays Ready throughout.
A blocking daemon is refused even by an operator without any policy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import msvc
from tests.support.namespaces import scratch_namespace
from tests.support.operator import Operator
from tests.support.processes import TEST_UID_SIZE, TEST_UID_START
from tests.support.tenants import Tenants
from tests.support.waits import wait_for

PY = "/usr/bin/python3"  # world-executable (the test venv's interpreter lives under /root)
SECRET = "tenant-a-secret-value-93ab"

SNOOP = r"""
import json, os, sys, glob, time
out = {"canary": any("canary" in v for v in os.environ.values()),
       "kubeconfig_env": "KUBECONFIG" in os.environ,
       "kubernetes_env": any(k.startswith("KUBERNETES_") for k in os.environ),
       "uid": os.getuid()}
def can_read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None
out["kubeconfig_file"] = can_read(sys.argv[1]) is not None
out["operator_environ"] = can_read(f"/proc/{sys.argv[2]}/environ") is not None
seen = b""
for path in glob.glob("/proc/[0-9]*/environ"):
    seen += can_read(path) or b""
out["secret_in_some_environ"] = sys.argv[3].encode() in seen
found = b""
for path in glob.glob(sys.argv[4] + "/**", recursive=True):
    if os.path.isfile(path):
        found += can_read(path) or b""
out["secret_in_state_files"] = sys.argv[3].encode() in found
out["state_listing"] = os.access(sys.argv[4] + "/services", os.R_OK)
with open(os.path.join(os.environ["HOME"], "report.json"), "w") as fh:
    json.dump(out, fh)
time.sleep(600)
"""

FORK_BOMB = r"""
import os, time
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        n += 1
    except OSError:
        time.sleep(600)
"""

HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"

DOUBLE_FORK = ["/bin/sh", "-c", "setsid /bin/sh -c 'sleep 600 &' ; exec sleep 600"]


def status_of(kubectl: Any, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, name).get("status") or {}


def test_tenants_cannot_reach_the_operator_or_each_other(
    control_plane: Any, kubectl: Any, sandboxed: Tenants
) -> None:
    a, b, op, state = sandboxed
    kubectl("create", "secret", "generic", "a-token", "-n", a, f"--from-literal=token={SECRET}")
    victim = {
        "daemon": {
            "command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"],
            "env": [
                {
                    "name": "TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "a-token", "key": "token"}},
                }
            ],
        },
        "endpoint": {"protocol": "tcp", "healthCheck": {"periodSeconds": 1}},
    }
    apply(kubectl, a, msvc("victim", victim))
    wait_ready(kubectl, a, "victim")
    op_pid = str(op.proc.pid if op.proc else 0)
    kubeconfig = str(control_plane.env().get("KUBECONFIG", "/nonexistent"))
    snoop = {"daemon": {"command": [PY, "-c", SNOOP, kubeconfig, op_pid, SECRET, str(state)]}}
    apply(kubectl, b, msvc("snoop", snoop))
    wait_ready(kubectl, b, "snoop")

    home = next(state.glob(f"services/{b}/snoop/runtime/home"))
    report = wait_for(lambda: (home / "report.json").exists() and home / "report.json")
    seen = json.loads(Path(report).read_text())
    print("\nSNOOP", seen)
    assert seen["uid"] != 0 and seen["uid"] != status_of(kubectl, a, "victim").get("uid")
    assert not seen["canary"] and not seen["kubeconfig_env"] and not seen["kubernetes_env"]
    assert not seen["kubeconfig_file"] and not seen["operator_environ"]
    assert not seen["secret_in_some_environ"], "tenant B read tenant A's environment"
    assert not seen["secret_in_state_files"], "a Secret value is readable on disk"
    assert not seen["state_listing"]

    # a fork bomb is held by its pids limit; a memory hog is OOMKilled
    apply(
        kubectl,
        b,
        msvc("bomb", {"daemon": {"command": [PY, "-c", FORK_BOMB], "resources": {"pids": 32}}}),
    )
    hog = {
        "daemon": {"command": [PY, "-c", HOG], "resources": {"memory": "64Mi"}},
        "restartPolicy": "Never",
    }
    apply(kubectl, b, msvc("hog", hog))
    wait_for(
        lambda: (
            status_of(kubectl, b, "hog").get("lastError", "").find("OOM") >= 0
            or any(
                c.get("reason") == "OOMKilled"
                for c in status_of(kubectl, b, "hog").get("conditions", [])
            )
        ),
        timeout=60,
    )
    time.sleep(2)
    bomb_uid = None
    for p in psutil.process_iter(["uids", "cmdline"]):
        if p.info["cmdline"] and FORK_BOMB[:20] in " ".join(p.info["cmdline"]):
            bomb_uid = p.info["uids"].real
    assert bomb_uid is not None
    bomb_procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == bomb_uid]
    assert len(bomb_procs) <= 32, len(bomb_procs)

    # a double-forked grandchild is gone once its service is deleted
    apply(kubectl, b, msvc("forker", {"daemon": {"command": DOUBLE_FORK}}))
    wait_ready(kubectl, b, "forker")
    forker_uid = wait_for(
        lambda: next(
            (
                p.info["uids"].real
                for p in psutil.process_iter(["uids", "cmdline"])
                if p.info["cmdline"] == ["sleep", "600"]
                and TEST_UID_START <= p.info["uids"].real < TEST_UID_START + TEST_UID_SIZE
            ),
            None,
        )
    )
    kubectl("delete", "msvc", "forker", "-n", b, "--wait=true", "--timeout=60s")
    left = [  # a zombie is already dead: only its reaper has not collected it yet
        p
        for p in psutil.process_iter(["uids", "status"])
        if p.info["uids"].real == forker_uid and p.info["status"] != psutil.STATUS_ZOMBIE
    ]
    assert not left, left

    # the victim stayed Ready throughout
    ready = next(c for c in status_of(kubectl, a, "victim")["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


# --------------------------------------------------------------------------- refusals
def refused(kubectl: Any, ns: str, name: str, rule_id: str) -> dict[str, Any]:
    """Wait for Stalled; Ready=False PolicyDenied naming the rule, and exactly one such Event."""

    def stalled() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in status_of(kubectl, ns, name).get("conditions", [])}
        return conds if conds.get("Stalled", {}).get("status") == "True" else None

    conds = wait_for(stalled, timeout=90, what=f"{ns}/{name} Stalled")
    ready = conds["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PolicyDenied", ready
    assert ready["message"].startswith(f"{rule_id}:"), ready
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    mine = [
        e for e in events if e["involvedObject"]["name"] == name and e["reason"] == "PolicyDenied"
    ]
    assert len(mine) == 1 and mine[0]["type"] == "Warning", mine
    assert f"{rule_id}:" in mine[0]["message"], mine[0]
    st = status_of(kubectl, ns, name)
    assert not st.get("runtime", {}).get("pid") and st.get("restarts", 0) == 0, st
    return ready


def test_blocking_is_refused_even_without_policies(
    operator: Operator, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-in-the-operator"
    code = f"open({str(marker)!r}, 'w').write('x')"
    apply(
        kubectl,
        namespace,
        msvc("blocker", {"daemon": {"command": [PY, "-c", code], "blocking": True}}),
    )
    apply(
        kubectl,
        namespace,
        msvc("neighbour", {"daemon": {"command": [PY, "-c", "import time; time.sleep(600)"]}}),
    )
    ready = refused(kubectl, namespace, "blocker", "daemon-blocking")
    assert "operator mode" in ready["message"] and "own process" in ready["message"]
    wait_ready(kubectl, namespace, "neighbour")
    assert not marker.exists()


TF_OUTPUTS = (
    'output "url" { value = "http://127.0.0.1:9/out" }\n'
    'output "token" {\n  value     = "tenant-b-output-token"\n  sensitive = true\n}\n'
)
FLOOD = (
    "import sys\n"
    "i = 0\n"
    "while True:\n"
    "    sys.stdout.write(f'{i:012d}' + 'x' * 87 + '\\n')\n"
    "    i += 1\n"
)
FLOOD_MAX = 64 * 1024
FLOOD_BACKUPS = 1


def secret(kubectl: Any, ns: str, name: str) -> dict[str, Any] | None:
    out = kubectl("get", "secret", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


LATER = "steward-e2e-orphan-later-7c21"


def marked(marker: str) -> list[psutil.Process]:
    """Live processes whose argv carries ``marker`` (zombies are already dead)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if marker in (p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def size_of(path: Path) -> int:
    """0 for a file renamed away between the listing and the stat (a rotation)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def text_of(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tf_out(name: str) -> dict[str, Any]:
    return {
        "terraform": {
            "module": {"inline": {"main.tf": TF_OUTPUTS}},
            "writeOutputsToSecret": {"name": name},
        }
    }


@pytest.mark.usefixtures("policy_crd_installed")
def test_policy_refusals_outputs_secrets_and_a_log_flood(
    control_plane: Any, crd_installed: None, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    with scratch_namespace(kubectl, f"{namespace[:40]}-b") as b:
        a = namespace
        label = f"e2e-tenants-{a[-20:]}"
        for ns in (a, b):
            kubectl("label", "namespace", ns, f"{label}=yes")
        policy = {  # the secure defaults, plus outputs Secrets and a log ceiling
            "apiVersion": "steward.dev/v1alpha1",
            "kind": "StewardPolicy",
            "metadata": {"name": f"{label}-tenants"},
            "spec": {
                "namespaceSelector": {"matchLabels": {label: "yes"}},
                "terraform": {"allowOutputsSecret": True},
                "maxLogBytes": 64 * 1024 * 1024,  # the defaults (10Mi x 4) fit
            },
        }
        kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))
        op = Operator(
            control_plane,
            a,
            tmp_path / "state",
            tmp_path / "operator.log",
            extra_args=("-n", b, "--enforce-policy"),
        )
        op.start()
        try:
            victim = {
                "daemon": {"command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]},
                "endpoint": {"protocol": "tcp", "healthCheck": {"periodSeconds": 1}},
            }
            apply(kubectl, a, msvc("victim", victim))
            since = next(
                c["lastTransitionTime"]
                for c in wait_ready(kubectl, a, "victim")["status"]["conditions"]
                if c["type"] == "Ready"
            )
            sleeper = [PY, "-c", "import time; time.sleep(600)"]

            # singleton and Orphan: denied by the policy's secure defaults; blocking: always
            apply(kubectl, b, msvc("single", {"daemon": {"command": sleeper, "singleton": True}}))
            apply(
                kubectl,
                b,
                msvc("orphan", {"daemon": {"command": sleeper}, "deletionPolicy": "Orphan"}),
            )
            apply(kubectl, b, msvc("blocker", {"daemon": {"command": sleeper, "blocking": True}}))
            refused(kubectl, b, "single", "daemon-singleton")
            refused(kubectl, b, "orphan", "deletion-orphan")
            refused(kubectl, b, "blocker", "daemon-blocking")

            # Orphan set after the start (no admission here): the finalizer stops it anyway
            later = [*sleeper, LATER]
            apply(kubectl, b, msvc("later", {"daemon": {"command": later}}))
            wait_ready(kubectl, b, "later")
            kubectl(
                "patch",
                "msvc",
                "later",
                "-n",
                b,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"deletionPolicy": "Orphan"}}),
            )
            wait_for(lambda: get(kubectl, b, "later")["status"].get("observedGeneration") == 2)
            assert marked(LATER)
            kubectl("delete", "msvc", "later", "-n", b, "--wait=true", "--timeout=60s")
            assert not marked(LATER), "deletionPolicy Orphan was honoured against the policy"
            events = json.loads(kubectl("get", "events", "-n", b, "-o", "json").stdout)["items"]
            assert any(
                e["involvedObject"]["name"] == "later"
                and e["reason"] == "PolicyDenied"
                and e["message"].startswith("deletion-orphan:")
                and "stopping it instead" in e["message"]
                for e in events
            ), [e["message"] for e in events if e["involvedObject"]["name"] == "later"]

            # outputs: a Secret Steward did not create for the resource is never written
            kubectl(
                "create", "secret", "generic", "db-creds", "-n", b, "--from-literal=password=keep"
            )
            apply(kubectl, b, msvc("legit", tf_out("legit-out")))
            wait_ready(kubectl, b, "legit", timeout=180)
            owned = wait_for(lambda: secret(kubectl, b, "legit-out"), timeout=60)
            uid = get(kubectl, b, "legit")["metadata"]["uid"]
            assert owned["metadata"]["labels"]["steward.dev/owner"] == uid
            assert owned["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "steward"
            assert [r["uid"] for r in owned["metadata"]["ownerReferences"]] == [uid]
            assert set(owned["data"]) == {"url", "token"}
            apply(kubectl, b, msvc("thief", tf_out("db-creds")))
            apply(kubectl, b, msvc("hijack", tf_out("legit-out")))
            ready = refused(kubectl, b, "thief", "outputs-secret-not-owned")
            assert "db-creds" in ready["message"]
            refused(kubectl, b, "hijack", "outputs-secret-not-owned")
            creds = secret(kubectl, b, "db-creds")
            assert creds is not None and set(creds["data"]) == {"password"}
            assert "ownerReferences" not in creds["metadata"]
            assert secret(kubectl, b, "legit-out") == owned, "another resource's Secret changed"

            # a log flood: rotated by size as it grows, never above maxBytes per file
            flood = {
                "daemon": {
                    "command": [PY, "-c", FLOOD],
                    "log": {"maxBytes": FLOOD_MAX, "backups": FLOOD_BACKUPS},
                }
            }
            apply(kubectl, b, msvc("flood", flood))
            wait_ready(kubectl, b, "flood")
            log = wait_for(
                lambda: next(
                    iter((tmp_path / "state").glob(f"services/{b}/flood/**/daemon.log")), None
                )
            )
            largest, deadline = 0, time.monotonic() + 5
            while time.monotonic() < deadline:
                files = list(log.parent.glob("daemon.log*"))
                sizes = [size_of(f) for f in files]
                largest = max([largest, *sizes])
                assert len(files) <= FLOOD_BACKUPS + 1, files
                time.sleep(0.005)
            counters = [
                int(line[:12])
                for f in log.parent.glob("daemon.log*")
                for line in text_of(f).splitlines()
                if len(line) == 99 and line[:12].isdigit()
            ]
            written = (max(counters) + 1) * 100  # every line is 100 bytes
            print(f"\nFLOOD wrote {written} bytes; largest file seen {largest} of {FLOOD_MAX}")
            assert largest <= FLOOD_MAX
            assert written > 20 * FLOOD_MAX * (FLOOD_BACKUPS + 1), (
                "the flood was too slow to prove it"
            )
            kubectl("delete", "msvc", "flood", "-n", b, "--wait=true", "--timeout=60s")

            # deleting a resource deletes the Secret it owns, and nobody else's
            kubectl(
                "delete",
                "msvc",
                "legit",
                "thief",
                "-n",
                b,
                "--wait=true",
                "--timeout=120s",
                timeout=150,
            )
            assert secret(kubectl, b, "legit-out") is None
            assert secret(kubectl, b, "db-creds") is not None

            # tenant A's service stayed Ready throughout
            ready_a = next(
                c for c in status_of(kubectl, a, "victim")["conditions"] if c["type"] == "Ready"
            )
            assert ready_a["status"] == "True" and ready_a["lastTransitionTime"] == since
        finally:
            for ns in (a, b):
                print(kubectl("get", "msvc", "-n", ns, "-o", "yaml", check=False).stdout[-3000:])
            print(op.logs()[-3000:])
            for ns in (a, b):
                kubectl(
                    "delete",
                    "msvc",
                    "--all",
                    "-n",
                    ns,
                    "--wait=true",
                    "--timeout=120s",
                    check=False,
                    timeout=150,
                )
            op.stop()
            for p in marked(LATER):  # only if the test failed: what it started, by pid
                p.kill()
            kubectl("delete", "stewardpolicy", policy["metadata"]["name"], check=False)
