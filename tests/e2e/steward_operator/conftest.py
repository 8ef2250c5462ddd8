"""The operator under test: the real `steward run` process against the real apiserver."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "crds" / "managedservices.steward.dev.yaml"


@pytest.fixture(scope="session")
def crd_installed(control_plane: Any) -> None:
    env = control_plane.env()
    kubectl = str(control_plane.bin_dir / "kubectl")
    subprocess.run(
        [kubectl, "apply", "--server-side", "-f", str(CRD)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [
            kubectl,
            "wait",
            "--for=condition=Established",
            "crd/managedservices.steward.dev",
            "--timeout=60s",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=90,
    )


@dataclass
class Operator:
    """A `steward run` process watching one namespace, restartable (and killable) by tests."""

    control_plane: Any
    namespace: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "steward.cli",
                "--state-dir",
                str(self.state_dir),
                "run",
                "-n",
                self.namespace,
                "--metrics-port",
                str(self.metrics_port),
                "--metrics-addr",
                "127.0.0.1",
                *self.extra_args,
            ],
            env={**self.control_plane.env(), **dict(self.extra_env)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def operator(
    control_plane: Any,
    crd_installed: None,
    namespace: str,
    tmp_path: Path,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
) -> Iterator[Operator]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    op = Operator(
        control_plane,
        namespace,
        tmp_path / "operator-state",
        tmp_path / "operator.log",
        metrics_port=port,
    )
    op.start()
    yield op
    try:
        if op.proc is None or op.proc.poll() is not None:
            op.start()
        # Let the finalizers stop what the tests started, then stop the operator.
        kubectl(
            "delete",
            "managedservices",
            "--all",
            "-n",
            namespace,
            "--wait=true",
            "--timeout=90s",
            check=False,
            timeout=120,
        )
    finally:
        op.stop()
        print(op.logs()[-4000:])


def apply(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    namespace: str,
    doc: dict[str, Any],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=check)


def get(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str, name: str
) -> dict[str, Any]:
    return json.loads(kubectl("get", "msvc", name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]


def wait_ready(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    namespace: str,
    name: str,
    timeout: int = 60,
) -> dict[str, Any]:
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


def wait_for(pred: Callable[[], Any], timeout: float = 60, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def msvc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "steward.dev/v1alpha1",
        "kind": "ManagedService",
        "metadata": {"name": name},
        "spec": spec,
    }


def http_daemon_spec(extra_args: list[str] | None = None) -> dict[str, Any]:
    return {
        "daemon": {
            "command": [
                sys.executable,
                "-m",
                "http.server",
                "$(PORT)",
                "--bind",
                "127.0.0.1",
                *(extra_args or []),
            ]
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


# The Docker engine and locally built test images (shared with the container suite).
from tests.integration.container.conftest import docker_images  # noqa: E402, F401
