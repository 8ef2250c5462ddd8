"""The tiny daemon of the scale and detection scenarios: bench/tcp_listener.c, compiled once.

Cached as ``~/.cache/steward/bench/tcp_listener-<source hash>``: static when the
C library allows it (a few hundred KB of RSS per process), dynamic otherwise,
and a Python stand-in (bench/harness/py_listener.py, ~10 MB each) without gcc.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness.cleanup import log

SOURCE = Path(__file__).resolve().parents[1] / "tcp_listener.c"
PY_LISTENER = Path(__file__).resolve().parent / "py_listener.py"


def cache_dir() -> Path:
    base = os.environ.get("STEWARD_CACHE") or str(Path.home() / ".cache" / "steward")
    return Path(base) / "bench"


def listener_argv() -> list[str]:
    """argv prefix of the listener: ``[*prefix, PORT, HEALTH_FILE?]``."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = cache_dir() / f"tcp_listener-{digest}"
    if os.access(binary, os.X_OK):
        return [str(binary)]
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is not None:
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        for flags in (["-static"], []):
            r = subprocess.run(
                [gcc, "-O2", "-s", *flags, "-o", str(tmp), str(SOURCE)],
                capture_output=True,
                text=True,
                check=False,
            )
            if r.returncode == 0:
                tmp.replace(binary)
                log(f"compiled {binary.name} ({'static' if flags else 'dynamic'})")
                return [str(binary)]
        log(f"gcc failed ({r.stderr.strip()[-300:]}); using the Python listener")
    else:
        log("no gcc; using the Python listener (about 10 MB RSS each)")
    return [sys.executable, str(PY_LISTENER)]
