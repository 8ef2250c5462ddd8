"""One supervisord per use: its config, XML-RPC, supervisorctl, shutdown by PID."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness.cleanup import Reaper, log
from bench.harness.peers.install import NOFILE, raise_nofile
from bench.harness.timing import free_port

RUNNING = 20
"""supervisord's process state code for RUNNING."""


@dataclass
class Program:
    name: str
    argv: list[str]
    autostart: bool = False


def min_fds(programs: int) -> int:
    """supervisord's ``minfds`` for this many children (3 pipes each), at least its default.

    Every spawn closes each descriptor below ``minfds`` one by one, so a large value
    costs start-up time: it is sized to the workload, not set to the maximum.
    """
    return min(NOFILE, max(1024, 4 * programs + 256))


class Supervisord:
    """One supervisord (``nodaemon``), XML-RPC on a 127.0.0.1 port, files in ``work``."""

    def __init__(self, reaper: Reaper, bin_dir: Path, work: Path, scope: str) -> None:
        self.reaper, self.bin, self.work, self.scope = reaper, bin_dir, work, scope
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "supervisord.conf"
        self.log_file = work / "supervisord.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def write_config(self, programs: list[Program]) -> None:
        url = f"http://127.0.0.1:{self.port}"
        lines = [
            "[supervisord]",
            "nodaemon=true",
            "user=root" if os.geteuid() == 0 else "",
            f"logfile={self.log_file}",
            f"pidfile={self.work / 'supervisord.pid'}",
            f"childlogdir={self.work}",
            f"minfds={min_fds(len(programs))}",
            "[inet_http_server]",
            f"port=127.0.0.1:{self.port}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl={url}",
        ]
        for p in programs:
            lines += [
                f"[program:{p.name}]",
                f"command={shlex.join(p.argv)}",
                f"autostart={'true' if p.autostart else 'false'}",
                "autorestart=true",
                "stdout_logfile=NONE",
                "redirect_stderr=true",
                "stopwaitsecs=5",
            ]
        self.conf.write_text("\n".join(line for line in lines if line) + "\n")

    def start(self, programs: list[Program], wait: bool = True) -> float:
        """Start supervisord with ``programs``; returns the moment it was spawned."""
        self.write_config(programs)
        self.started_at = time.monotonic()
        self.proc = self.reaper.spawn(
            [str(self.bin / "supervisord"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.reaper.env(scope=self.scope),
            preexec_fn=raise_nofile,
        )
        self.reaper.on_close(f"supervisord {self.scope}", self.shutdown)
        if wait:
            self.wait_rpc()
        return self.started_at

    def wait_rpc(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.rpc().supervisor.getState()
                return
            except (OSError, xmlrpc.client.Error):
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"supervisord did not answer; see {self.log_file}") from None
                time.sleep(0.02)

    def rpc(self) -> Any:
        """A fresh proxy (ServerProxy is not thread-safe)."""
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2")

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.reaper.env(scope=self.scope),
            check=False,
        )

    def info(self, name: str) -> dict[str, Any]:
        return dict(self.rpc().supervisor.getProcessInfo(name))

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def shutdown(self) -> None:
        """``supervisor.shutdown`` over XML-RPC, then check it is gone; leftovers by PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                self.rpc().supervisor.shutdown()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                log(f"supervisord {self.scope} ignored shutdown; stopping it by PID")
        self.reaper.stop_proc(self.proc, grace=5)
        self.proc = None
        left = self.reaper.sweep_scope(self.scope)
        if left:
            log(f"supervisord {self.scope}: killed {left} leftover process(es) by PID")


_SPAWNERR = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*spawnerr")


def failed_spawns(log_file: Path) -> list[float]:
    """Seconds (from the first) of each failed spawn in supervisord's log."""
    times = []
    try:
        for line in log_file.read_text().splitlines():
            m = _SPAWNERR.match(line)
            if m:
                times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    except OSError:
        pass
    return [round(t - times[0], 3) for t in times]
