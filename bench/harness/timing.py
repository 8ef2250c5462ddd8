"""Timing helpers: percentiles, summaries, a tight HTTP/TCP poll, free ports, clocks."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

POLL_INTERVAL = 0.005
"""The raw baselines poll every 5 ms."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, mean, min, max (seconds or whatever unit the values have)."""
    xs = [v for v in values if v is not None and not math.isnan(v)]
    return {
        "n": len(xs),
        "p50": _r(percentile(xs, 50)),
        "p95": _r(percentile(xs, 95)),
        "mean": _r(sum(xs) / len(xs)) if xs else None,
        "min": _r(min(xs)) if xs else None,
        "max": _r(max(xs)) if xs else None,
    }


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 4)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(port: int, path: str = "/", timeout: float = 1.0) -> int | None:
    """Status code of a GET on 127.0.0.1:port, None when nothing (valid) answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            line = s.makefile("rb").readline()
    except OSError:
        return None
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def tcp_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def poll_http_200(port: int, timeout: float, interval: float = POLL_INTERVAL) -> float | None:
    """Poll every ``interval`` s; monotonic time of the first HTTP 200, None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(port) == 200:
            return time.monotonic()
        time.sleep(interval)
    return None


def process_start_monotonic(pid: int) -> float | None:
    """When ``pid`` started, on the time.monotonic() clock (10 ms resolution).

    /proc/PID/stat's starttime counts clock ticks since boot (CLOCK_BOOTTIME);
    psutil's create_time adds the boot time rounded to whole seconds, which
    would put up to a second of error into a sub-second breakdown.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    now_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic() - (now_boot - started)
