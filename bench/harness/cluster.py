"""The real control plane (hack/testenv), a small API client over the admin cert, kubectl."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hack.testenv import controlplane

from bench.harness.audit import AuditLog
from bench.harness.cleanup import Reaper, log

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "managedservices.steward.dev.yaml"
GROUP, VERSION, PLURAL = "steward.dev", "v1alpha1", "managedservices"


class ControlPlaneInfo(Protocol):
    """What the benchmarks use of hack/testenv's ControlPlaneInfo."""

    bin_dir: Path
    server: str
    startup_seconds: float

    def env(self) -> dict[str, str]: ...

    def ssl_context(self) -> ssl.SSLContext: ...


def start_control_plane(reaper: Reaper, audit: AuditLog | None = None) -> ControlPlaneInfo:
    """etcd + kube-apiserver from $STEWARD_TESTBIN (or build-testbin.sh); stopped on close."""
    testbin = os.environ.get("STEWARD_TESTBIN", "").strip()
    bin_dir = Path(testbin) if testbin else controlplane.build_testbin()
    controlplane.check_bin_dir(bin_dir)
    cp = controlplane.ControlPlane(
        bin_dir, extra_apiserver_args=audit.apiserver_args() if audit else ()
    )
    reaper.on_close("control plane", cp.stop)
    info: ControlPlaneInfo = cp.start()
    log(f"control plane up in {info.startup_seconds}s at {info.server} (pids {cp.pids})")
    return info


class Api:
    """JSON requests to the apiserver as admin; one keep-alive connection per thread.

    Counts its own requests (verb, resource) so scenarios can subtract them from
    the apiserver's request counters.
    """

    def __init__(self, info: ControlPlaneInfo) -> None:
        self.info = info
        url = urlsplit(info.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.ctx = info.ssl_context()
        self._local = threading.local()
        self.sent: Counter[tuple[str, str]] = Counter()
        self._sent_lock = threading.Lock()

    def connection(self, timeout: float | None = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def _conn(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connection()
            self._local.conn = conn
        return conn

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        if resource:
            with self._sent_lock:
                self.sent[(method, resource)] += 1
        ctype = resp.getheader("Content-Type", "")
        payload: Any = json.loads(raw) if raw and "json" in ctype else raw.decode(errors="replace")
        return resp.status, payload

    # -- ManagedServices ---------------------------------------------------
    def msvc_path(self, ns: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def create(self, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        status, out = self.request("POST", self.msvc_path(ns), obj, resource=PLURAL)
        if status not in (200, 201):
            raise RuntimeError(f"create {obj['metadata']['name']}: HTTP {status}: {out}")
        return dict(out)

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        status, out = self.request("GET", self.msvc_path(ns, name), resource=PLURAL)
        return dict(out) if status == 200 else None

    def delete(self, ns: str, name: str) -> int:
        status, _ = self.request("DELETE", self.msvc_path(ns, name), resource=PLURAL)
        return status

    def merge_patch(self, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        status, out = self.request(
            "PATCH",
            self.msvc_path(ns, name),
            patch,
            content_type="application/merge-patch+json",
            resource=PLURAL,
        )
        if status != 200:
            raise RuntimeError(f"patch {name}: HTTP {status}: {out}")
        return dict(out)

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        status, out = self.request("POST", "/api/v1/namespaces", body, resource="namespaces")
        if status not in (200, 201, 409):
            raise RuntimeError(f"create namespace {name}: HTTP {status}: {out}")

    # -- apiserver metrics -------------------------------------------------
    def request_counts(self) -> Counter[tuple[str, str, str]]:
        """apiserver_request_total summed by (verb, resource, subresource), resources only."""
        status, text = self.request("GET", "/metrics")
        counts: Counter[tuple[str, str, str]] = Counter()
        if status != 200:
            return counts
        for line in str(text).splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_part, _, value = line.rpartition(" ")
            labels = _labels(labels_part[len("apiserver_request_total") :])
            if not labels.get("resource"):
                continue
            key = (labels.get("verb", ""), labels["resource"], labels.get("subresource", ""))
            counts[key] += int(float(value))
        return counts


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    body = text.strip().lstrip("{").rstrip("}")
    for part in body.split('",'):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip().strip('"')
    return out


class Kubectl:
    """kubectl as cluster admin (the bin dir's binary, the control plane's kubeconfig)."""

    def __init__(self, info: ControlPlaneInfo, reaper: Reaper) -> None:
        self.binary = str(info.bin_dir / "kubectl")
        self.env = reaper.env(info.env())

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc


def install_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-f", str(CRD))
    # (kubectl wait fails outright while the CRD has no conditions yet: poll instead.)
    # kubectl caches discovery; this also keeps the first timed apply from paying for it.
    deadline = time.monotonic() + 30
    while kubectl("get", "msvc", "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the ManagedService CRD is not served")
        time.sleep(0.2)


def msvc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ManagedService",
        "metadata": {"name": name},
        "spec": spec,
    }
