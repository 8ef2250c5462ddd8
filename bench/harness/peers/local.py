"""`steward local ... -o json` as a peer: its rows timed as they arrive, its status files."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.cleanup import Reaper, log
from bench.harness.peers.install import raise_nofile


@dataclass
class Row:
    t: float
    data: dict[str, Any]


@dataclass
class LocalSteward:
    """``steward local PATHS -o json`` in its own scope; its rows, timed as they arrive."""

    reaper: Reaper
    argv: list[str]
    scope: str
    rows: list[Row] = field(default_factory=list)
    t_spawn: float = 0.0
    t_header: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False
    """stop() had to SIGKILL it: it did not finish stopping its services within the grace."""
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> LocalSteward:
        self.t_spawn = time.monotonic()
        self.proc = self.reaper.spawn(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.reaper.env(scope=self.scope),
            preexec_fn=raise_nofile,
        )
        threading.Thread(target=self._read, daemon=True, name=f"read-{self.scope}").start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            t = time.monotonic()
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            with self._cond:
                if self.t_header is None and str(data.get("message", "")).startswith("NAME"):
                    self.t_header = t
                self.rows.append(Row(t, data))
                self._cond.notify_all()

    def wait_row(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, since: float = 0.0
    ) -> Row | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.rows:
                    if r.t >= since and pred(r.data):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def stop(self, grace: float = 120) -> None:
        """SIGTERM (it stops its services), SIGKILL after ``grace``; leftovers by PID."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                log(f"{self.scope}: steward local still stopping after {grace:g} s; SIGKILL")
            self.reaper.stop_proc(self.proc, grace=0)
            self.proc = None
        self.reaper.sweep_scope(self.scope)


def status_file(state_dir: Path, name: str) -> dict[str, Any]:
    path = state_dir / "services" / "default" / name / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
