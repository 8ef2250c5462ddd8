"""A daemon that reports what its sandbox lets it do, and how a test reads the report.

The script tries the pod's ServiceAccount token, PID 1's environment and the state
directory, writes the answers to ``report.json`` in its working directory (its home),
prints them, then serves that directory on ``argv[1]`` (``argv[2]``: the address,
default 127.0.0.1) for the health check. A test reads the report from the host
through ``/proc/<pid>/cwd``: the pod's processes are this host's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
STATE_DIR = "/var/lib/steward"

PROBE = f"""
import json, os, sys, http.server
report = {{"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
           "groups": os.getgroups(), "env": sorted(os.environ), "cwd": os.getcwd()}}
for path in ({TOKEN!r}, "/proc/1/environ", {STATE_DIR + "/uids.json"!r}):
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        report[path] = "read"
    except OSError as exc:
        report[path] = exc.strerror
try:
    os.listdir({STATE_DIR!r})
    report["list-state-dir"] = "listed"
except OSError as exc:
    report["list-state-dir"] = exc.strerror
with open("report.json", "w") as fh:
    json.dump(report, fh)
print("report", json.dumps(report), flush=True)
bind = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
http.server.ThreadingHTTPServer(
    (bind, int(sys.argv[1])), http.server.SimpleHTTPRequestHandler
).serve_forever()
"""


def uid_of(pid: int) -> tuple[int, ...]:
    """(real, effective, saved, fs) uid of a host pid."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    raise AssertionError(f"no Uid line for {pid}")


def groups_of(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return [int(x) for x in line.split()[1:]]
    return []


def report_of(pid: int, timeout: float = 30) -> dict[str, Any]:
    path = Path(f"/proc/{pid}/cwd/report.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            time.sleep(0.5)
    pytest.fail(f"no report.json from pid {pid}", pytrace=False)
    raise AssertionError("unreachable")
