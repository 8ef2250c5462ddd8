"""supervisord and pm2, installed once per pinned version under ~/.cache/steward/bench-peers/."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.harness.cleanup import log
from bench.harness.listener import cache_dir

SUPERVISOR_VERSION = "4.3.0"
PM2_VERSION = "7.0.4"
NOFILE = 20000
"""RLIMIT_NOFILE for every peer alike (capped at the hard limit): 5,000 children need pipes."""
MARKER = ".complete"


def peers_dir() -> Path:
    return cache_dir().parent / "bench-peers"


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _installed(target: Path, install: Callable[[Path], None]) -> Path:
    """``target`` made by ``install`` once; a half-made one (no marker) is made again."""
    if (target / MARKER).exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing {target.name} into {target.parent}")
    install(target)
    (target / MARKER).touch()
    return target


def install_supervisor() -> Path:
    """The bin directory of a venv holding supervisor ``SUPERVISOR_VERSION``."""

    def make(target: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        subprocess.run(
            [str(target / "bin" / "pip"), "install", "-q", f"supervisor=={SUPERVISOR_VERSION}"],
            check=True,
        )

    return _installed(peers_dir() / f"supervisor-{SUPERVISOR_VERSION}", make) / "bin"


def install_pm2() -> Path:
    """The ``pm2`` executable of a local npm install of pm2 ``PM2_VERSION``."""

    def make(target: Path) -> None:
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(target),
                "--no-audit",
                "--no-fund",
                "-s",
                f"pm2@{PM2_VERSION}",
            ],
            check=True,
        )

    return _installed(peers_dir() / f"pm2-{PM2_VERSION}", make) / "node_modules" / ".bin" / "pm2"
