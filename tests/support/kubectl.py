"""Running kubectl and helm against a test control plane, and the ManagedService verbs."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

DEFAULT_TIMEOUT = 60.0

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def runner(
    binary: str | os.PathLike[str],
    env: Mapping[str, str],
    fail: Callable[[str], object] | None = None,
) -> Runner:
    """``run(*args, input=None, check=True, timeout=60, extra_env=None)`` for one tool.

    A non-zero exit with ``check`` (and a timeout) fails the test with the tool's
    output; ``fail`` replaces pytest.fail (e.g. to raise AssertionError instead).
    """
    tool = Path(binary).name
    report: Callable[[str], object] = fail or (lambda msg: pytest.fail(msg, pytrace=False))

    def run(
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [str(binary), *map(str, args)]
        try:
            proc = subprocess.run(
                argv,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**env, **(extra_env or {})},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            report(f"{tool} timed out after {timeout}s: {list(argv)}\n{stderr}")
            raise
        if check and proc.returncode != 0:
            report(
                f"{tool} exited with {proc.returncode}: {list(argv)}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    return run


def tool_runner(tool: str, info: Any, fail: Callable[[str], object] | None = None) -> Runner:
    """A runner for ``info.bin_dir / tool`` with the control plane's admin environment."""
    return runner(info.bin_dir / tool, info.env(), fail)


def install_crds(kubectl: Runner, *crds: Path | str, timeout: int = 60) -> None:
    """Server-side apply CRD files, then wait until each is Established."""
    for crd in crds:
        kubectl("apply", "--server-side", "-f", str(crd), timeout=timeout)
        name = yaml.safe_load(Path(crd).read_text())["metadata"]["name"]
        kubectl(
            "wait",
            "--for=condition=Established",
            f"crd/{name}",
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )


def apply(
    kubectl: Runner, namespace: str, doc: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=check)


def get(kubectl: Runner, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "msvc", name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]


def patch(
    kubectl: Runner,
    namespace: str,
    name: str,
    change: dict[str, Any],
    kind: str = "msvc",
    subresource: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """A JSON merge patch of one object (``kind`` ``name`` in ``namespace``)."""
    sub = [f"--subresource={subresource}"] if subresource else []
    return kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        *sub,
        "--type=merge",
        "-p",
        json.dumps(change),
        check=check,
    )


def wait_ready(kubectl: Runner, namespace: str, name: str, timeout: int = 60) -> dict[str, Any]:
    kubectl(
        "wait",
        "--for=condition=Ready",
        f"msvc/{name}",
        "-n",
        namespace,
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    return get(kubectl, namespace, name)


def delete_all_msvc(kubectl: Runner, namespace: str, timeout: int = 90) -> None:
    """Delete every ManagedService in NAMESPACE and wait: their finalizers need the operator."""
    kubectl(
        "delete",
        "managedservices",
        "--all",
        "-n",
        namespace,
        "--wait=true",
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )


def token_kubeconfig(
    kubectl: Runner, control_plane: Any, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig holding only a fresh token of ``NAMESPACE/ACCOUNT`` (and the CA)."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": control_plane.server,
                            "certificate-authority": str(control_plane.ca_file),
                        },
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
                "current-context": "c",
            }
        )
    )
    path.chmod(0o600)
    return path


def get_or_none(kubectl: Runner, *what: str) -> dict[str, Any] | None:
    """``kubectl get WHAT -o json``; None when it is not found (any other error fails)."""
    out = kubectl("get", *what, "-o", "json", check=False)
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def log_reader(
    kubectl: Runner, namespace: str, account: str, may_read_log: bool, node_reader: str
) -> None:
    """ServiceAccount ``account`` in ``namespace``: get on ManagedServices there (and on
    managedservices/log when ``may_read_log``), and ClusterRole ``node_reader`` (get on
    StewardNodes, to find the host): what `steward logs --kubeconfig` needs."""
    kubectl("create", "serviceaccount", account, "-n", namespace)
    resources = ["managedservices", *(["managedservices/log"] if may_read_log else [])]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": account, "namespace": namespace},
        "rules": [{"apiGroups": ["steward.dev"], "resources": resources, "verbs": ["get"]}],
    }
    kubectl("apply", "-f", "-", input=json.dumps(role))
    kubectl("create", "rolebinding", account, "-n", namespace, f"--role={account}",
            f"--serviceaccount={namespace}:{account}")  # fmt: skip
    kubectl("create", "clusterrolebinding", f"{namespace}-{account}",
            f"--clusterrole={node_reader}", f"--serviceaccount={namespace}:{account}")  # fmt: skip
