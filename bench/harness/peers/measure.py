"""Measuring a supervising process and its workload: CPU, VmHWM, ports, first 200."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.harness.timing import poll_http_200, tcp_open


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself (its children are the workload)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def vm_hwm(pid: int) -> float:
    """Peak resident set (VmHWM) in bytes, 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held at once while choosing)."""
    holders = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            holders.append(s)
        return [int(s.getsockname()[1]) for s in holders]
    finally:
        for s in holders:
            s.close()


def wait_ports(ports: list[int], timeout: float, interval: float = 0.005) -> float | None:
    """Monotonic time at which every port has accepted once; None on timeout."""
    pending = set(ports)
    deadline = time.monotonic() + timeout
    while pending:
        pending -= {p for p in list(pending) if tcp_open(p, timeout=0.5)}
        if not pending:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
    return time.monotonic()


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


class Answer(threading.Thread):
    """The first HTTP 200 on ``port`` after it stopped answering (polled every 5 ms)."""

    def __init__(self, port: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.port, self.timeout = port, timeout
        self.at: float | None = None

    def run(self) -> None:
        self.at = poll_http_200(self.port, self.timeout)


class Returned(threading.Thread):
    """When a command process ends, on the monotonic clock (while the caller polls)."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        super().__init__(daemon=True)
        self.proc, self.timeout = proc, timeout
        self.at: float | None = None
        self.start()

    def run(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.timeout)
            self.at = time.monotonic()


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` has exited (gone or a zombie): its sockets are closed by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.001)
