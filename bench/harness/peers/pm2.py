"""One pm2 daemon per use, its own PM2_HOME; every command a pm2 CLI run."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import psutil

from bench.harness.cleanup import Reaper, kill_pids, log
from bench.harness.peers.install import raise_nofile


def pm2_app(name: str, argv: list[str], **extra: Any) -> dict[str, Any]:
    """An ecosystem entry running ``argv`` as is (no interpreter), restarted when it ends."""
    return {
        "name": name,
        "script": argv[0],
        "args": argv[1:],
        "interpreter": "none",
        "autorestart": True,
        **extra,
    }


class Pm2:
    """One pm2 daemon with its own ``PM2_HOME`` in ``work``; every command is a pm2 CLI run."""

    def __init__(self, reaper: Reaper, pm2: Path, work: Path, scope: str) -> None:
        self.reaper, self.pm2, self.work, self.scope = reaper, pm2, work, scope
        self.home = work / "pm2-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = reaper.env(scope=scope)
        self.env.update(PM2_HOME=str(self.home), PM2_DISABLE_TELEMETRY="1", NO_COLOR="1")
        self._closing = False
        reaper.on_close(f"pm2 {scope}", self.kill)

    def cmd(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pm2), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.work,
            preexec_fn=raise_nofile,
            check=False,
        )

    def ecosystem(self, apps: list[dict[str, Any]], name: str) -> Path:
        path = self.work / f"{name}.json"
        path.write_text(json.dumps({"apps": apps}))
        return path

    def start(self, apps: list[dict[str, Any]], name: str) -> subprocess.CompletedProcess[str]:
        return self.cmd("start", str(self.ecosystem(apps, name)))

    def spawn_start(self, apps: list[dict[str, Any]], name: str) -> subprocess.Popen[bytes]:
        """``pm2 start`` without waiting for it (the caller times the workload)."""
        return self.reaper.spawn(
            [str(self.pm2), "start", str(self.ecosystem(apps, name))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.work,
            preexec_fn=raise_nofile,
        )

    def jlist(self) -> list[dict[str, Any]]:
        r = self.cmd("jlist", timeout=120)
        out = r.stdout.strip()
        start = out.find("[")
        return list(json.loads(out[start:])) if start >= 0 else []

    def daemon_pid(self) -> int:
        try:
            return int((self.home / "pm2.pid").read_text().strip())
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        """``pm2 kill`` (its apps, then its daemon), check the daemon is gone, leftovers by PID."""
        if self._closing:
            return
        self._closing = True
        pid = self.daemon_pid()
        if pid or (self.home / "rpc.sock").exists():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.cmd("kill", timeout=180)
        if pid:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout=10)
            if psutil.pid_exists(pid):
                log(f"pm2 {self.scope}: daemon {pid} still there after pm2 kill; by PID")
                kill_pids([pid])
        left = self.reaper.sweep_scope(self.scope)
        if left:
            log(f"pm2 {self.scope}: killed {left} leftover process(es) by PID")


def cli_error(text: str) -> str:
    for line in text.splitlines():
        if "ERROR" in line or "Error" in line:
            return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    return ""
