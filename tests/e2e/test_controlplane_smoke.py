"""Smoke suite: the e2e control plane is a real Kubernetes API server.

CRDs with CEL validation, the status subresource, printer columns,
``kubectl wait``, watches, helm against the server, TokenRequest-minted
service-account tokens and RBAC decisions - none of which a fake would give.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.kubectl import Runner, patch

E2E_DIR = Path(__file__).resolve().parent
FIXTURES = E2E_DIR / "fixtures"
CRD_FILE = FIXTURES / "smoke-crd.yaml"
CHART_DIR = FIXTURES / "testchart"
CRD_NAME = "widgets.smoke.e2e.steward.test"
WIDGET_API = "smoke.e2e.steward.test/v1alpha1"
GOMOD = E2E_DIR.parents[1] / "hack" / "testenv" / "go.mod"

pytestmark = pytest.mark.e2e

# The kubectl / helm fixtures (tests/e2e/conftest.py).


def _pinned(module: str) -> str:
    for line in GOMOD.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == module and fields[1].startswith("v"):
            return fields[1]
    raise AssertionError(f"{module} not pinned in {GOMOD}")


K8S_VERSION = _pinned("k8s.io/kubernetes")
ETCD_VERSION = _pinned("go.etcd.io/etcd/server/v3")
HELM_VERSION = _pinned("helm.sh/helm/v3")


def _widget(name: str, namespace: str, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": WIDGET_API,
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.fixture
def widget_crd(kubectl: Runner) -> Iterator[str]:
    kubectl("apply", "-f", CRD_FILE)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    try:
        yield CRD_NAME
    finally:
        kubectl(
            "delete",
            "-f",
            CRD_FILE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=30s",
            check=False,
        )


def test_versions_and_admin_identity(control_plane: Any, kubectl: Runner) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    minor = K8S_VERSION.split(".")[1]
    for side in ("clientVersion", "serverVersion"):
        assert versions[side]["gitVersion"] == K8S_VERSION, versions
        assert (versions[side]["major"], versions[side]["minor"]) == ("1", minor), versions

    etcd = subprocess.run(
        [str(control_plane.bin_dir / "etcd"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert f"etcd Version: {ETCD_VERSION.lstrip('v')}" in etcd.stdout

    helm = subprocess.run(
        [str(control_plane.bin_dir / "helm"), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=control_plane.env(),
    )
    assert helm.stdout.strip() == HELM_VERSION

    whoami = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "steward-admin"
    assert "system:masters" in whoami["status"]["userInfo"]["groups"]


def test_crd_cel_and_schema_validation(kubectl: Runner, namespace: str, widget_crd: str) -> None:
    # CEL rule on spec: rejected with the rule's message, nothing stored.
    bad = kubectl(
        "create", "-f", "-", input=_widget("bad", namespace, size=3, minSize=5), check=False
    )
    assert bad.returncode != 0
    assert "minSize must not exceed size" in bad.stderr, bad.stderr
    missing = kubectl("get", "widget", "bad", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    # OpenAPI schema (maximum) is enforced too.
    big = kubectl("create", "-f", "-", input=_widget("big", namespace, size=1000), check=False)
    assert big.returncode != 0
    assert "should be less than or equal to 100" in big.stderr, big.stderr

    # A valid object is accepted; a CEL transition rule (oldSelf) guards updates.
    kubectl(
        "create", "-f", "-", input=_widget("good", namespace, size=3, minSize=1, flavor="vanilla")
    )
    change = patch(
        kubectl, namespace, "good", {"spec": {"flavor": "chocolate"}}, "widget", check=False
    )
    assert change.returncode != 0
    assert "flavor is immutable" in change.stderr, change.stderr
    patch(kubectl, namespace, "good", {"spec": {"size": 4}}, kind="widget")

    # Printer columns from the CRD show up in `kubectl get`.
    table = kubectl("get", "widgets", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "FLAVOR", "PHASE", "AGE"], table
    assert table[1].split()[:3] == ["good", "4", "vanilla"], table


def test_status_subresource_and_kubectl_wait(
    control_plane: Any, kubectl: Runner, namespace: str, widget_crd: str
) -> None:
    kubectl("create", "-f", "-", input=_widget("w1", namespace, size=2, flavor="plain"))

    waiter = subprocess.Popen(
        [
            str(control_plane.bin_dir / "kubectl"),
            "wait",
            "--for=condition=Ready",
            "widget/w1",
            "-n",
            namespace,
            "--timeout=30s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=control_plane.env(),
    )
    try:
        time.sleep(0.5)
        assert waiter.poll() is None, "kubectl wait returned before the condition was set"

        # With a status subresource, status written through the main resource is dropped.
        patch(kubectl, namespace, "w1", {"status": {"phase": "Hacked"}}, kind="widget")
        assert (
            kubectl("get", "widget", "w1", "-n", namespace, "-o", "jsonpath={.status.phase}").stdout
            == ""
        )

        status = {
            "status": {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Smoke",
                        "message": "set by the smoke test",
                        "observedGeneration": 1,
                        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    }
                ],
            }
        }
        patch(kubectl, namespace, "w1", status, kind="widget", subresource="status")

        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert "condition met" in out
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()

    obj = json.loads(kubectl("get", "widget", "w1", "-n", namespace, "-o", "json").stdout)
    assert obj["status"]["phase"] == "Ready"
    assert obj["metadata"]["generation"] == 1  # status writes do not bump generation
    patch(kubectl, namespace, "w1", {"spec": {"size": 5}}, kind="widget")
    assert (
        kubectl(
            "get", "widget", "w1", "-n", namespace, "-o", "jsonpath={.metadata.generation}"
        ).stdout
        == "2"
    )
    row = kubectl("get", "widget", "w1", "-n", namespace, "--no-headers").stdout.split()
    assert row[:4] == ["w1", "5", "plain", "Ready"], row


def test_watch_receives_events(control_plane: Any, kubectl: Runner, namespace: str) -> None:
    url = f"{control_plane.server}/api/v1/namespaces/{namespace}/configmaps"
    with requests.Session() as session:
        # verify/cert per request: a session-level verify loses against
        # $REQUESTS_CA_BUNDLE in requests' settings merge.
        # The response headers arrive once the watch is registered: every
        # change made after this returns is delivered on the stream.
        resp = session.get(
            url,
            params={"watch": "true", "timeoutSeconds": "30"},
            verify=str(control_plane.ca_file),
            cert=(str(control_plane.client_cert), str(control_plane.client_key)),
            stream=True,
            timeout=(10, 30),
        )
        with resp:
            assert resp.status_code == 200, resp.text
            kubectl("create", "configmap", "watched", "-n", namespace, "--from-literal=v=1")
            patch(kubectl, namespace, "watched", {"data": {"v": "2"}}, kind="configmap")
            kubectl("delete", "configmap", "watched", "-n", namespace)

            events = []
            for line in resp.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if obj.get("metadata", {}).get("name") != "watched":
                    continue
                events.append((event["type"], obj.get("data", {}).get("v")))
                if event["type"] == "DELETED":
                    break

    assert events == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")], events


def test_helm_lint_template_install_uninstall(
    kubectl: Runner, helm: Runner, namespace: str
) -> None:
    lint = helm("lint", CHART_DIR)
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout, lint.stdout
    # values.schema.json is enforced by lint, template and install alike.
    broken = helm("lint", CHART_DIR, "--set", "greeting=", check=False)
    assert broken.returncode != 0, broken.stdout
    assert "at '/greeting': minLength" in broken.stdout, broken.stdout
    assert "1 chart(s) failed" in broken.stderr, broken.stderr
    bad_install = helm(
        "install", "bad", CHART_DIR, "-n", namespace, "--set", "greeting=", check=False
    )
    assert (
        bad_install.returncode != 0 and "values don't meet the specifications" in bad_install.stderr
    )

    rendered = list(
        yaml.safe_load_all(
            helm("template", "smoke", CHART_DIR, "-n", namespace, "--set", "greeting=hi").stdout
        )
    )
    rendered = [doc for doc in rendered if doc]
    assert [(d["kind"], d["metadata"]["name"]) for d in rendered] == [
        ("ConfigMap", "smoke-greeting")
    ]
    assert rendered[0]["data"]["greeting"] == "hi"
    # Offline rendering uses helm's built-in Kubernetes version (set at build time).
    assert rendered[0]["data"]["kubeVersion"].startswith("v1." + K8S_VERSION.split(".")[1] + ".")

    helm(
        "install",
        "smoke",
        CHART_DIR,
        "-n",
        namespace,
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout",
        "60s",
    )
    cm = json.loads(
        kubectl("get", "configmap", "smoke-greeting", "-n", namespace, "-o", "json").stdout
    )
    assert cm["data"]["greeting"] == "hi"
    # ... while an install asks the live API server for its version.
    assert cm["data"]["kubeVersion"] == K8S_VERSION
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    releases = json.loads(helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("smoke", "deployed")]
    assert (
        kubectl(
            "get",
            "secret",
            "sh.helm.release.v1.smoke.v1",
            "-n",
            namespace,
            "-o",
            "jsonpath={.type}",
        ).stdout
        == "helm.sh/release.v1"
    )

    helm("uninstall", "smoke", "-n", namespace, "--wait", "--timeout", "60s")
    gone = kubectl("get", "configmap", "smoke-greeting", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert json.loads(helm("list", "-n", namespace, "-o", "json").stdout) == []


def test_serviceaccount_token_and_rbac(
    control_plane: Any, kubectl: Runner, namespace: str, tmp_path: Path
) -> None:
    kubectl("create", "serviceaccount", "robot", "-n", namespace)
    kubectl(
        "create",
        "role",
        "configmap-reader",
        "-n",
        namespace,
        "--verb=get,list,watch",
        "--resource=configmaps",
    )
    kubectl(
        "create",
        "rolebinding",
        "robot-reads-configmaps",
        "-n",
        namespace,
        "--role=configmap-reader",
        f"--serviceaccount={namespace}:robot",
    )
    kubectl("create", "configmap", "probe", "-n", namespace, "--from-literal=x=1")

    token = kubectl("create", "token", "robot", "-n", namespace, "--duration=10m").stdout.strip()
    claims = _jwt_claims(token)
    username = f"system:serviceaccount:{namespace}:robot"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == username
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]

    def as_robot(*args: str, bearer: str = token) -> subprocess.CompletedProcess[str]:
        kubeconfig = tmp_path / "robot.kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "robot",
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": control_plane.server,
                                "certificate-authority": str(control_plane.ca_file),
                            },
                        }
                    ],
                    "users": [{"name": "robot", "user": {"token": bearer}}],
                    "contexts": [
                        {
                            "name": "robot",
                            "context": {"cluster": "c", "user": "robot", "namespace": namespace},
                        }
                    ],
                }
            )
        )
        return kubectl(*args, check=False, extra_env={"KUBECONFIG": str(kubeconfig)})

    whoami = as_robot("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == username

    allowed = as_robot("get", "configmap", "probe", "-o", "jsonpath={.data.x}")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "1"

    denied = as_robot("get", "secrets")
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f'User "{username}" cannot list resource "secrets"' in denied.stderr, denied.stderr

    no_create = as_robot("create", "configmap", "nope", "--from-literal=a=b")
    assert no_create.returncode != 0 and 'cannot create resource "configmaps"' in no_create.stderr

    other_ns = as_robot("get", "configmaps", "-n", "default")
    assert other_ns.returncode != 0 and 'in the namespace "default"' in other_ns.stderr

    assert as_robot("auth", "can-i", "list", "configmaps").stdout.strip() == "yes"
    assert as_robot("auth", "can-i", "delete", "configmaps").stdout.strip() == "no"

    # A token whose signature does not verify is not authenticated at all.
    header, payload, signature = token.split(".")
    forged = ".".join(
        [header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")]
    )
    rejected = as_robot("get", "configmaps", bearer=forged)
    assert rejected.returncode != 0
    assert "Unauthorized" in rejected.stderr or "provide credentials" in rejected.stderr, (
        rejected.stderr
    )
