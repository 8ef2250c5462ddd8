"""Tenants attack through `kubectl apply` only; the operator runs with --sandbox.

Two tenant namespaces share one operator. Tenant B's daemon tries to read the
operator's environment, its kubeconfig and /proc, tenant A's Secret from
A's /proc/PID/environ and A's pid file; a fork bomb, a memory hog and a
double-forking daemon follow. Each attack is contained with the reason in
status, and tenant A's service stays Ready throughout.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import msvc
from tests.support.operator import Operator
from tests.support.waits import wait_for

PY = "/usr/bin/python3"  # world-executable (the test venv's interpreter lives under /root)
CANARY = "steward-operator-canary-4f1d"
SECRET = "tenant-a-secret-value-93ab"
UIDS = f"{0x70F00000}-4096"  # the leak check watches this range (tests/conftest.py)

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
    control_plane: Any, crd_installed: None, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    a, b = namespace, f"{namespace}-b"
    kubectl("create", "namespace", b)
    # Its parents must be traversable by the sandbox uids (pytest's tmp root is 0700 root),
    # as /var/lib/steward is in a real install.
    state = Path(tempfile.mkdtemp(prefix="steward-e2e-sandbox-", dir="/tmp"))
    op = Operator(
        control_plane,
        a,
        state,
        tmp_path / "operator.log",
        extra_args=("-n", b, "--sandbox"),
        extra_env=(("STEWARD_E2E_CANARY", CANARY), ("STEWARD_SANDBOX_UIDS", UIDS)),
    )
    op.start()
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "a-token"},
            "stringData": {"token": SECRET},
        }
        kubectl("apply", "-n", a, "-f", "-", input=yaml.safe_dump(secret))
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
                    if p.info["cmdline"] == ["sleep", "600"] and p.info["uids"].real >= 0x70F00000
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
        ready = next(
            c for c in status_of(kubectl, a, "victim")["conditions"] if c["type"] == "Ready"
        )
        assert ready["status"] == "True"
    finally:
        for ns in (a, b):
            print(kubectl("get", "msvc", "-n", ns, "-o", "yaml", check=False).stdout[-3000:])
        print(op.logs()[-3000:])
        for log in state.glob("services/*/*/runtime/*.log"):
            print(log, log.read_text(errors="replace")[-2000:])
        for ns in (a, b):
            kubectl(
                "delete",
                "msvc",
                "--all",
                "-n",
                ns,
                "--wait=true",
                "--timeout=90s",
                check=False,
                timeout=120,
            )
        op.stop()
        kubectl("delete", "namespace", b, "--wait=false", check=False)
        shutil.rmtree(state, ignore_errors=True)
