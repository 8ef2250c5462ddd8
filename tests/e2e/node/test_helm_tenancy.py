"""The chart's tenant boundary on a real kubelet node (issue 14, chart part).

``helm install`` with the chart's defaults (``--enforce-policy``, ``--sandbox``,
the ValidatingAdmissionPolicy and the default StewardPolicy), then as two
teams would: one daemon ManagedService in each of two tenant namespaces. Each
becomes Ready and, seen from the host (the pod's processes are this host's):

* runs under its own sandbox uid from the chart's range (not the operator's
  uid 0, not the other tenant's), with no supplementary group;
* cannot read the pod's ServiceAccount token, the operator's environment
  (``/proc/1/environ``) or list the operator's state directory;
* has no ``KUBERNETES_*`` (nor any operator variable) in its environment;
* runs without resource limits, and its status says so (the pod's cgroupfs is
  read-only): ``status.runtime.limitsEnforced: false`` with the reason.

Then ``helm upgrade`` without DAC_OVERRIDE in ``tenancy.sandbox.capabilities``:
a start fails with Permission denied (the process starts in its 0700 home,
entered before the uid switch), which is why the chart keeps it.

The daemon writes what it could do into ``report.json`` in its own home (its
working directory), read from the host through ``/proc/<pid>/cwd``. A spec
the default policy denies (a privileged container, a blocking daemon) is
refused at admission by the chart's ValidatingAdmissionPolicy.

Addresses: 127.0.0.1 inside the pod only. The release, its namespace and the
tenant namespaces are removed by name.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import helm_node as hn
from tests.support.kubectl import Runner
from tests.support.node import NodeSession
from tests.support.sandbox_probe import PROBE, STATE_DIR, TOKEN, groups_of, report_of, uid_of

TERRAFORM_RBAC = Path(__file__).resolve().parents[3] / "deploy" / "terraform-namespace-rbac.yaml"
PLAIN_TF = 'resource "terraform_data" "x" {}\noutput "ok" { value = "yes" }\n'
UID_START, UID_COUNT = 1879048192, 65536  # values.yaml tenancy.sandbox.uidRange
OPERATOR_UID = 0  # the chart runs the operator pod as root when the sandbox is on
SANDBOX_CAPS = ("SETUID", "SETGID", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE")  # values.yaml
NAME = "probe"


def _probe(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "daemon": {"command": ["/usr/bin/python3", "-c", PROBE, "$(PORT)"]},
            "endpoint": {"protocol": "http", "port": 18181, "healthCheck": {"http": {"path": "/"}}},
        },
    }


def _denied(ns: str) -> dict[str, dict[str, Any]]:
    """Specs the chart's default StewardPolicy refuses, by the rule that refuses them."""
    return {
        "container-privileged": {
            "apiVersion": "steward.dev/v1alpha1",
            "kind": "ManagedService",
            "metadata": {"name": "privileged", "namespace": ns},
            "spec": {"container": {"image": "busybox:1.36", "privileged": True}},
        },
        "daemon-blocking": {
            "apiVersion": "steward.dev/v1alpha1",
            "kind": "ManagedService",
            "metadata": {"name": "blocking", "namespace": ns},
            "spec": {"daemon": {"command": ["/bin/true"], "blocking": True}},
        },
    }


def _daemon_pid(pod_uid: str, uid: int) -> int:
    """The host pid of the pod's process running the probe as ``uid``."""
    found = [
        p
        for p in hn.pod_pids(pod_uid)
        if hn.argv(p)[:2] == ["/usr/bin/python3", "-c"] and uid_of(p)[0] == uid
    ]
    assert len(found) == 1, {p: (hn.argv(p)[:2], uid_of(p)) for p in hn.pod_pids(pod_uid)}
    return found[0]


def _refused(kubectl: Runner, obj: dict[str, Any], rule: str, timeout: float = 60) -> str:
    """A server-side dry run until the admission policy refuses ``obj`` (it may need a
    moment after install to be in force); the refusal message."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)
        if out.returncode != 0:
            return out.stderr
        last = out.stdout
        time.sleep(1)
    pytest.fail(f"{rule}: accepted for {timeout}s: {last}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.mark.timeout(420)
def test_chart_defaults_sandbox_two_tenants_and_admission(
    node_session: NodeSession, node_kubectl: Runner
) -> None:
    """helm install with defaults; one sandboxed daemon per tenant namespace, Ready, each
    under its own uid, no token, no KUBERNETES_*; denied specs refused at admission."""
    hn.need_operator(node_session)
    kubectl = node_kubectl
    suffix = uuid.uuid4().hex[:6]
    t1, t2 = f"tenant-a-{suffix}", f"tenant-b-{suffix}"
    release = rns = f"steward-tenancy-{suffix}"
    with hn.namespaces(kubectl, t1, t2, rns):
        try:
            hn.install(node_session, release, rns, "operator.logFormat=text")
            pod = hn.operator_pod(kubectl, rns, release)
            pod_uid = pod["metadata"]["uid"]
            op = pod["spec"]["containers"][0]
            assert "--sandbox" in op["args"] and "--enforce-policy" in op["args"], op["args"]
            op_pid = hn.operator_pid(pod_uid)
            assert uid_of(op_pid)[0] == OPERATOR_UID
            # Root in the pod, with the chart's capabilities only (CapEff on the host).
            status = Path(f"/proc/{op_pid}/status").read_text()
            cap_eff = int(
                next(ln for ln in status.splitlines() if ln.startswith("CapEff:")).split()[1], 16
            )
            wanted = {
                "CHOWN": 0,
                "DAC_OVERRIDE": 1,
                "FOWNER": 3,
                "KILL": 5,
                "SETGID": 6,
                "SETUID": 7,
            }
            assert cap_eff == sum(1 << bit for bit in wanted.values()), hex(cap_eff)
            assert "KUBERNETES_SERVICE_HOST" in hn.environ(op_pid)  # the operator has them

            # --- a spec the default policy denies is refused at admission.
            for rule, obj in _denied(t1).items():
                message = _refused(kubectl, obj, rule)
                assert rule in message and "ValidatingAdmissionPolicy" in message, message
                print(f"\nadmission refused {rule}: {message.strip()[:200]}")

            # --- one sandboxed daemon per tenant.
            t0 = time.monotonic()
            for ns in (t1, t2):
                hn.apply(kubectl, _probe(ns))
            took = {
                ns: hn.wait_ready(kubectl, ns, [NAME], 120, (rns, release), t0) for ns in (t1, t2)
            }
            print(f"Ready: {took}")
            uids: dict[str, int] = {}
            for ns in (t1, t2):
                msvc = hn.msvcs(kubectl, ns)[NAME]
                runtime = msvc["status"]["runtime"]
                uid = runtime["uid"]
                uids[ns] = uid
                assert UID_START <= uid < UID_START + UID_COUNT, runtime
                # The pod's cgroupfs is read-only: no limits, and status says why.
                assert runtime["limitsEnforced"] is False, runtime
                assert runtime.get("limitsUnavailable"), runtime
                pid = _daemon_pid(pod_uid, uid)
                assert uid_of(pid) == (uid, uid, uid, uid)
                assert groups_of(pid) == []
                report = report_of(pid)
                assert (report["uid"], report["euid"], report["gid"]) == (uid, uid, uid)
                assert report["groups"] == []
                assert report[TOKEN] == "Permission denied", report
                assert report["/proc/1/environ"] == "Permission denied", report
                assert report[f"{STATE_DIR}/uids.json"] == "Permission denied", report
                assert report["list-state-dir"] == "Permission denied", report
                assert not [k for k in report["env"] if k.startswith("KUBERNETES_")], report
                assert not {"POD_ID", "HOSTNAME", "DOCKER_HOST"} & set(report["env"]), report
                # the host's view of its environment agrees
                assert not [k for k in hn.environ(pid) if k.startswith("KUBERNETES_")]
                assert report["cwd"].startswith(f"{STATE_DIR}/"), report
                print(
                    f"{ns}: uid {uid} (operator uid {OPERATOR_UID}), env {report['env']}, "
                    f"token: {report[TOKEN]}, limits: {runtime.get('limitsUnavailable')}"
                )
            assert uids[t1] != uids[t2], uids

            # --- Terraform's kubernetes backend in the pod: the state Secret is written with
            # a token of the tenant's own ServiceAccount (TokenRequest through the chart's
            # RBAC), never with the operator's.
            kubectl("apply", "-n", t1, "-f", str(TERRAFORM_RBAC))
            infra = {
                "apiVersion": "steward.dev/v1alpha1",
                "kind": "ManagedService",
                "metadata": {"name": "infra", "namespace": t1},
                "spec": {
                    "terraform": {
                        "module": {"inline": {"main.tf": PLAIN_TF}},
                        "binary": "bundled",
                        "backend": {"kubernetes": {}},
                    }
                },
            }
            hn.apply(kubectl, infra)
            hn.wait_ready(kubectl, t1, ["infra"], 180, (rns, release), time.monotonic())
            secrets = json.loads(kubectl("get", "secrets", "-n", t1, "-o", "json").stdout)
            names = [x["metadata"]["name"] for x in secrets["items"]]
            assert any(n.startswith("tfstate-default-") for n in names), names
            kubectl("delete", "-n", t1, "msvc/infra", "--timeout=120s", timeout=130)

            # --- DAC_OVERRIDE is needed: without it the root operator cannot enter the
            # service's 0700 home, where the process starts (before its uid switch).
            fewer = [c for c in SANDBOX_CAPS if c != "DAC_OVERRIDE"]
            hn.upgrade(
                node_session, release, rns, f"tenancy.sandbox.capabilities={{{','.join(fewer)}}}"
            )
            assert hn.operator_pod(kubectl, rns, release)["metadata"]["uid"] != pod_uid
            deadline = time.monotonic() + 90
            error = ""
            while time.monotonic() < deadline:
                error = (hn.msvcs(kubectl, t1)[NAME].get("status") or {}).get("lastError") or ""
                if "Permission denied" in error:
                    break
                time.sleep(1)
            assert error == "cannot start /usr/bin/python3: Permission denied", error
            print(f"without DAC_OVERRIDE: {error}")

            for ns in (t1, t2):
                kubectl("delete", "-n", ns, f"msvc/{NAME}", "--timeout=60s", timeout=70)
        except BaseException:
            print(hn.diagnose(kubectl, rns, release, t1))
            raise
        finally:
            hn.uninstall(node_session, release, rns)
