"""The operator under test: a real `steward run` process against a real apiserver."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kubectl import Runner, delete_all_msvc
from tests.support.paths import REPO
from tests.support.processes import stop_process


def start_steward(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m steward.cli ARGS` from the repository root, output appended to LOG."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "steward.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


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
        args = ["--state-dir", str(self.state_dir), "run", "-n", self.namespace]
        args += ["--metrics-port", str(self.metrics_port), "--metrics-addr", "127.0.0.1"]
        env = {**self.control_plane.env(), **dict(self.extra_env)}
        self.proc = start_steward([*args, *self.extra_args], env, self.log)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def finish(self, kubectl: Runner) -> None:
        """Delete every ManagedService of its namespace, then stop. Their finalizers need a
        running operator: one that was stopped (or died) is started again first."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            delete_all_msvc(kubectl, self.namespace)
        finally:
            self.stop()

    def logs(self) -> str:
        return read_log(self.log)
