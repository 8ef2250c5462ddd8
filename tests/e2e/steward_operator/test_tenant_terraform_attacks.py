"""A tenant's Terraform module attacks, through `kubectl apply` only, with --sandbox on.

Tenant A applies a module whose state holds a Secret value (a `terraform_data` input
from varsFrom). Tenant B's module then tries to read A's `terraform.tfstate` with
`file()` and, from a `local-exec` provisioner, A's state, the operator's kubeconfig
and environment. Everything B's module runs has its own uid and a clean environment,
so each read fails; B's status, outputs and logs never hold A's value, and A stays
Ready throughout.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import msvc
from tests.support.paths import REPO
from tests.support.processes import TEST_UID_START
from tests.support.tenants import CANARY, Tenants
from tests.support.waits import wait_for

TERRAFORM_RBAC = REPO / "deploy" / "terraform-namespace-rbac.yaml"
SECRET = "tenant-a-tf-secret-value-51d0"

VICTIM_TF = """
variable "word" {
  type      = string
  sensitive = true
}
resource "terraform_data" "keep" { input = var.word }
output "kept" { value = "yes" }
"""

THIEF_TF = """
variable "victim_state" { type = string }
variable "kubeconfig" { type = string }
output "stolen" { value = try(file(var.victim_state), "denied") }
resource "terraform_data" "exfil" {
  provisioner "local-exec" {
    command = <<-EOT
      id -u > "$HOME/uid.txt"
      env > "$HOME/env.txt"
      cat "${var.victim_state}" > "$HOME/state.copy" 2>/dev/null || echo denied > "$HOME/state.copy"
      cat "${var.kubeconfig}" > "$HOME/kube.copy" 2>/dev/null || echo denied > "$HOME/kube.copy"
    EOT
  }
}
"""


def _tf(module: str, **extra: Any) -> dict[str, Any]:
    return {
        "terraform": {"module": {"inline": {"main.tf": module}}, "binary": "terraform", **extra}
    }


def test_a_module_cannot_read_another_tenants_state_or_the_operators_files(
    control_plane: Any, kubectl: Any, sandboxed: Tenants
) -> None:
    a, b, _, state = sandboxed
    kubectl("create", "secret", "generic", "a-word", "-n", a, f"--from-literal=word={SECRET}")
    victim = _tf(
        VICTIM_TF,
        varsFrom=[{"secretRef": {"name": "a-word"}, "key": "word", "varName": "word"}],
    )
    apply(kubectl, a, msvc("vault", victim))
    wait_ready(kubectl, a, "vault", timeout=180)
    victim_state = state / "services" / a / "vault" / "runtime" / "tfstate" / "terraform.tfstate"
    assert SECRET in victim_state.read_text(), "the victim's state should hold the value"

    kubeconfig = str(control_plane.env().get("KUBECONFIG", "/nonexistent"))
    thief = _tf(THIEF_TF, vars={"victim_state": str(victim_state), "kubeconfig": kubeconfig})
    apply(kubectl, b, msvc("thief", thief))
    obj = wait_ready(kubectl, b, "thief", timeout=180)

    home = state / "services" / b / "thief" / "runtime" / "home"
    copies = {f: (home / f).read_text() for f in ("uid.txt", "env.txt", "state.copy", "kube.copy")}
    print("\nTHIEF", {k: v[:200] for k, v in copies.items()})
    uid = int(copies["uid.txt"])
    assert uid >= TEST_UID_START and uid != victim_state.stat().st_uid
    assert copies["state.copy"].strip() == "denied"
    assert copies["kube.copy"].strip() == "denied"
    assert CANARY not in copies["env.txt"] and "KUBERNETES_" not in copies["env.txt"]
    assert "KUBECONFIG" not in copies["env.txt"]

    # Nothing of A's leaks into B's status, Events or logs.
    outputs = obj["status"].get("runtime", {}).get("outputs", {})
    assert outputs.get("stolen") in (None, "denied"), outputs
    assert SECRET not in json.dumps(obj)
    events = kubectl("get", "events", "-n", b, "-o", "json").stdout
    assert SECRET not in events
    for log in (state / "services" / b / "thief").rglob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log

    wait_for(lambda: get(kubectl, a, "vault")["status"]["state"] == "active")
    ready = next(
        c for c in get(kubectl, a, "vault")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["status"] == "True"


# ------------------------------------------------------- the kubernetes state backend
PROBE_TF = """
variable "kubeconfig" { type = string }
variable "other" { type = string }
resource "terraform_data" "probe" {
  provisioner "local-exec" {
    command = "/usr/bin/python3 -c \\"$SCRIPT\\" ${var.kubeconfig} ${var.other} > $HOME/probe.json"
    environment = { SCRIPT = <<-EOT
import json, ssl, sys, base64, tempfile, urllib.request, urllib.error
cfg = json.load(open(sys.argv[1]))
cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
ca = tempfile.NamedTemporaryFile(delete=False)
ca.write(base64.b64decode(cluster["certificate-authority-data"])); ca.close()
tls = ssl.create_default_context(cafile=ca.name)
def code(path):
    req = urllib.request.Request(cluster["server"] + path)
    req.add_header("Authorization", "Bearer " + user["token"])
    try:
        return urllib.request.urlopen(req, context=tls).status
    except urllib.error.HTTPError as exc:
        return exc.code
print(json.dumps({"other": code("/api/v1/namespaces/" + sys.argv[2] + "/secrets"),
                  "nodes": code("/api/v1/nodes")}))
EOT
    }
  }
}
output "probed" { value = "yes" }
"""


PLAIN_TF = 'resource "terraform_data" "x" {}\noutput "ok" { value = "yes" }\n'


def _grant_terraform(kubectl: Any, ns: str) -> None:
    """What a namespace admin sets up, as docs/security.md says: the shipped Role."""
    kubectl("apply", "-n", ns, "-f", str(TERRAFORM_RBAC))


def test_the_kubernetes_backend_gets_the_namespaces_token_not_the_operators(
    kubectl: Any, sandboxed: Tenants
) -> None:
    a, b, _, state = sandboxed
    _grant_terraform(kubectl, a)
    kubeconfig = state / "services" / a / "probe" / "runtime" / "backend.kubeconfig"
    spec = _tf(
        PROBE_TF,
        vars={"kubeconfig": str(kubeconfig), "other": b},
        backend={"kubernetes": {}},
    )
    apply(kubectl, a, msvc("probe", spec))
    wait_ready(kubectl, a, "probe", timeout=180)
    # the state Secret is in A's namespace, written with A's ServiceAccount token
    secrets = json.loads(kubectl("get", "secrets", "-n", a, "-o", "json").stdout)["items"]
    assert any(s["metadata"]["name"].startswith("tfstate-default-") for s in secrets)
    home = state / "services" / a / "probe" / "runtime" / "home"
    probed = json.loads((home / "probe.json").read_text())
    assert probed == {"other": 403, "nodes": 403}, probed  # the token reaches A only
    assert kubeconfig.stat().st_mode & 0o077 == 0
    assert kubeconfig.stat().st_uid >= TEST_UID_START

    # A namespace without that ServiceAccount: waiting for input, then served once made.
    apply(kubectl, b, msvc("infra", _tf(PLAIN_TF, backend={"kubernetes": {}})))

    def reason() -> str | None:
        conds = get(kubectl, b, "infra").get("status", {}).get("conditions", [])
        return next((c["reason"] for c in conds if c["type"] == "Ready"), None)

    wait_for(lambda: reason() == "BackendCredentialsMissing", timeout=90)
    _grant_terraform(kubectl, b)
    wait_ready(kubectl, b, "infra", timeout=180)
