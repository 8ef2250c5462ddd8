"""The operator with the Terraform flavor: Kubernetes state backend, varsFrom, outputs Secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.support.data import terraform
from tests.support.kubectl import apply, get, patch, wait_ready
from tests.support.manifests import msvc
from tests.support.waits import wait_for

MODULE = terraform("marker.tf", "service_outputs.tf")  # tests/data/terraform


def tf_spec(name: str, marker: Path) -> dict:  # type: ignore[type-arg]
    return {
        "terraform": {
            "module": {"inline": {"main.tf": MODULE}},
            "vars": {"name": name, "marker": str(marker)},
            "varsFrom": [
                {"secretRef": {"name": "tf-input"}, "key": "word", "varName": "secret_word"}
            ],
            "endpointOutput": "url",
            "backend": {"kubernetes": {}},
            "writeOutputsToSecret": {"name": "tf-out"},
        }
    }


def test_terraform_lifecycle_with_kubernetes_state(
    operator, kubectl, namespace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    word = "tf-e2e-secret-word-789"
    marker = tmp_path / "created"
    kubectl(
        "create", "secret", "generic", "tf-input", "-n", namespace, f"--from-literal=word={word}"
    )
    apply(kubectl, namespace, msvc("infra", tf_spec("alpha", marker)))
    obj = wait_ready(kubectl, namespace, "infra", timeout=180)
    st = obj["status"]
    assert st["state"] == "active" and st["flavor"] == "terraform"
    assert st["endpoint"]["uri"] == "http://127.0.0.1:9/alpha"
    assert marker.exists()
    # state lives in a Secret of the namespace (Terraform's kubernetes backend)
    secrets = json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"]
    names = {s["metadata"]["name"] for s in secrets}
    assert any(n.startswith("tfstate-default-") for n in names), names
    # outputs (sensitive included) in the requested Secret, owned by the resource
    out = wait_for(
        lambda: next(
            (
                s
                for s in json.loads(
                    kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout
                )["items"]
                if s["metadata"]["name"] == "tf-out"
            ),
            None,
        )
    )
    assert base64.b64decode(out["data"]["token"]).decode() == word
    assert base64.b64decode(out["data"]["url"]).decode() == "http://127.0.0.1:9/alpha"
    assert out["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    init_count = st["runtime"].get("initCount")

    # an update re-applies in place: new endpoint, no re-init
    apply(kubectl, namespace, msvc("infra", tf_spec("beta", marker)))
    obj = wait_for(
        lambda: (
            (o := get(kubectl, namespace, "infra"))["status"]["endpoint"].get("uri")
            == "http://127.0.0.1:9/beta"
            and o
        ),
        timeout=180,
    )
    assert obj["status"]["runtime"].get("initCount") == init_count
    assert marker.exists()

    # a changed varsFrom Secret is picked up: re-applied in place, outputs Secret follows
    new_word = "tf-e2e-rotated-word-321"
    patch(kubectl, namespace, "tf-input", {"stringData": {"word": new_word}}, kind="secret")

    def token() -> str:
        out = next(
            s
            for s in json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)[
                "items"
            ]
            if s["metadata"]["name"] == "tf-out"
        )
        return base64.b64decode(out["data"]["token"]).decode()

    wait_for(lambda: token() == new_word, timeout=120)
    assert marker.exists(), "a varsFrom change re-applies; it never destroys"

    everything = (
        kubectl("get", "msvc,events", "-n", namespace, "-o", "yaml").stdout + operator.logs()
    )
    assert word not in everything and new_word not in everything

    kubectl("delete", "msvc", "infra", "-n", namespace, "--timeout=180s", timeout=240)
    assert not marker.exists(), "destroy must run on delete"
    names = {
        s["metadata"]["name"]
        for s in json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
    }
    assert not any(n.startswith("tfstate-default-") for n in names), names


FAILING_DESTROY = """
resource "terraform_data" "stubborn" {
  provisioner "local-exec" {
    when    = destroy
    command = "echo refusing to go; exit 3"
  }
}
"""


def test_failing_destroy_keeps_finalizer_until_forced(operator, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    apply(
        kubectl,
        namespace,
        msvc("stubborn", {"terraform": {"module": {"inline": {"main.tf": FAILING_DESTROY}}}}),
    )
    wait_ready(kubectl, namespace, "stubborn", timeout=180)
    kubectl("delete", "msvc", "stubborn", "-n", namespace, "--wait=false")

    def reported() -> bool:
        obj = get(kubectl, namespace, "stubborn")
        return (
            bool(obj["metadata"].get("deletionTimestamp"))
            and obj["status"].get("state") == "error"
            and bool(obj["status"].get("lastError"))
        )

    wait_for(reported, timeout=120)
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["involvedObject"]["name"] == "stubborn" and e["type"] == "Warning" for e in events)
    assert get(kubectl, namespace, "stubborn")["metadata"]["finalizers"] == [
        "steward.dev/finalizer"
    ]
    kubectl("annotate", "msvc", "stubborn", "-n", namespace, "steward.dev/force-delete=true")
    wait_for(
        lambda: kubectl("get", "msvc", "stubborn", "-n", namespace, check=False).returncode != 0,
        timeout=120,
    )
