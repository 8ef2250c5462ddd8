"""The Docker engine (hack/docker/ensure-dockerd.sh) and the locally built busybox image.

The engine is shared with other test runs on the machine: when one already
answers it is used and left alone. When this run had to start it, it is
stopped again (by the PID in its pid file) at the end — unless containers
that are not this run's are on it by then.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from bench.harness.cleanup import RUN_ENV, RUN_LABEL, Reaper, kill_pids, log

HACK = Path(__file__).resolve().parents[2] / "hack" / "docker"


def _script_env() -> dict[str, str]:
    # A dockerd started from here must outlive the run's process sweep.
    return {k: v for k, v in os.environ.items() if k not in (RUN_ENV, "STEWARD_TEST_SESSION")}


def docker_ok() -> bool:
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pidfile() -> Path:
    base = os.environ.get("STEWARD_CACHE") or str(Path.home() / ".cache" / "steward")
    return Path(base) / "dockerd.pid"


def ensure_engine(reaper: Reaper) -> None:
    """A running engine; RuntimeError with the script's words when there is none."""
    if docker_ok():
        return
    r = subprocess.run(
        ["bash", str(HACK / "ensure-dockerd.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env=_script_env(),
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"no Docker engine: {r.stderr.strip()[-800:]}")
    with contextlib.suppress(OSError, ValueError):
        pid = int(_pidfile().read_text().strip())
        log(f"started dockerd (pid {pid}); it is stopped at the end if nobody else uses it")
        reaper.on_close("dockerd", lambda: _stop_dockerd(pid))


def _stop_dockerd(pid: int) -> None:
    ps = subprocess.run(
        ["docker", "ps", "-aq"], capture_output=True, text=True, timeout=30, check=False
    )
    if ps.stdout.strip():
        log(f"dockerd (pid {pid}) has other containers now; leaving it running")
        return
    kill_pids([pid], grace=15)


def busybox_image() -> str:
    """STEWARD_TEST_BUSYBOX_IMAGE from hack/docker/build-test-images.sh (cached, a second)."""
    r = subprocess.run(
        ["bash", str(HACK / "build-test-images.sh"), "busybox"],
        capture_output=True,
        text=True,
        timeout=900,
        env=_script_env(),
        check=False,
    )
    for line in r.stdout.split():
        if line.startswith("STEWARD_TEST_BUSYBOX_IMAGE="):
            return line.split("=", 1)[1]
    raise RuntimeError(f"busybox image not built: {r.stderr.strip()[-800:]}")


def run_detached(reaper: Reaper, image: str, port: int, argv: list[str]) -> str:
    """``docker run -d`` publishing 127.0.0.1:port -> 8080, labelled with the run; the id."""
    r = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--label",
            f"{RUN_LABEL}={reaper.run_id}",
            "-p",
            f"127.0.0.1:{port}:8080",
            image,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"docker run failed: {r.stderr.strip()}")
    return r.stdout.strip()


def run_via_api(reaper: Reaper, image: str, port: int, argv: list[str]) -> str:
    """The same container created and started through the Engine API (no CLI process); the id.

    A reference beside ``docker run``: what is left of the baseline without the CLI's start-up.
    """
    import docker as docker_sdk  # the bench's venv has the SDK (a Steward dependency)

    client = docker_sdk.from_env()
    try:
        c = client.containers.run(
            image,
            argv,
            detach=True,
            labels={RUN_LABEL: reaper.run_id},
            ports={"8080/tcp": ("127.0.0.1", port)},
        )
        return str(c.id)
    finally:
        client.close()


def remove(container_id: str) -> None:
    subprocess.run(
        ["docker", "rm", "-f", container_id], capture_output=True, timeout=60, check=False
    )
