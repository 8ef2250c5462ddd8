"""The operator under test: a real ``steward run`` process, its metrics, CPU and memory."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.cleanup import Reaper, log
from bench.harness.cluster import REPO, Api, ControlPlaneInfo, msvc
from bench.harness.timing import free_port
from bench.harness.watch import Watcher

PRELUDE_ENV = "STEWARD_BENCH_PRELUDE"
"""A Python file run inside the operator process before Steward starts (prototypes, probes)."""
_LAUNCH = (
    "import os, runpy, sys\n"
    f"prelude = os.environ.get({PRELUDE_ENV!r})\n"
    "if prelude:\n"
    "    runpy.run_path(prelude, run_name='steward_bench_prelude')\n"
    "from steward.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
NOFILE = 65536
"""RLIMIT_NOFILE asked for the operator (capped at the hard limit): 1,000 daemons and probes."""

Samples = dict[str, float]
"""Prometheus samples: 'name{label="v",...}' -> value."""


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def metric(samples: Samples, name: str) -> float:
    """Sum of every sample of ``name`` (over its labels)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


@dataclass
class Usage:
    """Memory and CPU of the operator process, sampled in the background."""

    series: list[tuple[float, float, float]] = field(default_factory=list)
    """(monotonic time, RSS bytes, CPU seconds user+system)."""

    @property
    def peak_rss(self) -> float:
        return max((r for _, r, _ in self.series), default=0.0)


class Operator:
    """``python -m steward.cli run -n NS --metrics-port P`` with its own state directory."""

    def __init__(
        self,
        info: ControlPlaneInfo,
        reaper: Reaper,
        namespace: str,
        work_dir: Path,
        scope: str,
        extra_args: list[str] | None = None,
        profile_dir: Path | None = None,
    ) -> None:
        self.info = info
        self.reaper = reaper
        self.namespace = namespace
        self.scope = scope
        self.state_dir = work_dir / f"operator-{scope}"
        self.log_path = work_dir / f"operator-{scope}.log"
        self.extra_args = extra_args or []
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self.usage = Usage()
        self.profile_dir = profile_dir
        self._profiler: subprocess.Popen[bytes] | None = None
        self._window_profilers: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        """`python -m steward.cli run`, except that a prelude ($STEWARD_BENCH_PRELUDE) may run
        first."""
        return [
            sys.executable,
            "-c",
            _LAUNCH,
            "--state-dir",
            str(self.state_dir),
            "run",
            "-n",
            self.namespace,
            "--metrics-port",
            str(self.port),
            "--metrics-addr",
            "127.0.0.1",
            *self.extra_args,
        ]

    def start(self, timeout: float = 90) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = self.reaper.spawn(
                self.argv(),
                env=self.reaper.env(self.info.env(), scope=self.scope),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                preexec_fn=_raise_nofile,
            )
        self.reaper.on_close(f"operator {self.scope}", self.close)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                self.metrics()
                if self.profile_dir is not None:  # py-spy needs a running interpreter
                    self._start_profiler(self.profile_dir)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator metrics not up after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def wait_watching(self, api: Api, watcher: Watcher, timeout: float = 60) -> float:
        """Create an inactive canary and wait for its status: the operator's watch is live.

        Returns the seconds it took. The canary stays (inactive: no process, no probes,
        no patches once its status is written).
        """
        t0 = time.monotonic()
        name = "zz-canary"
        api.create(
            self.namespace,
            msvc(name, {"adminState": "inactive", "daemon": {"command": ["true"]}}),
        )
        watcher.wait(name, lambda s: s.state is not None, timeout)
        return time.monotonic() - t0

    def _py_spy(self, out: Path, duration: float | None = None) -> subprocess.Popen[bytes] | None:
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            log("--profile: py-spy is not installed in the venv (pip install py-spy)")
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(spy), "record", "--pid", str(self.pid), "--format", "raw", "--rate", "100"]
        argv += ["--nonblocking", "--output", str(out)]
        argv += os.environ.get("STEWARD_BENCH_PYSPY_ARGS", "").split()  # e.g. "--gil"
        if duration is not None:
            argv += ["--duration", str(int(duration))]
        return self.reaper.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _start_profiler(self, out_dir: Path) -> None:
        """py-spy samples the operator until it stops (collapsed stacks, bench/profile_top.py)."""
        self.profile_path = out_dir / f"operator-{self.scope}.folded"
        self._profiler = self._py_spy(self.profile_path)

    def profile_window(self, label: str, seconds: float) -> None:
        """With --profile: a second py-spy for just the next ``seconds`` (a measured window)."""
        if self.profile_dir is not None:
            proc = self._py_spy(self.profile_dir / f"operator-{self.scope}-{label}.folded", seconds)
            if proc is not None:
                self._window_profilers.append(proc)

    # -- measurements ------------------------------------------------------
    def metrics(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return parse_metrics(r.read().decode())

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def rss(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss)

    def vm_hwm(self) -> float:
        """Peak RSS since the process started (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
        return 0.0

    def threads(self) -> int:
        return int(psutil.Process(self.pid).num_threads())

    def start_sampling(self, interval: float = 0.25) -> Usage:
        self.usage = Usage()
        self._sampling.set()

        def loop() -> None:
            proc = psutil.Process(self.pid)
            while self._sampling.is_set():
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    self.usage.series.append(
                        (time.monotonic(), float(proc.memory_info().rss), t.user + t.system)
                    )
                time.sleep(interval)

        self._sampler = threading.Thread(target=loop, name="operator-usage", daemon=True)
        self._sampler.start()
        return self.usage

    def stop_sampling(self) -> Usage:
        self._sampling.clear()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
        return self.usage

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def errors_in_log(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln][:20]

    # -- teardown ----------------------------------------------------------
    def close(self) -> None:
        """Stop the operator (workloads stay, as on any operator exit), then its workloads."""
        self.stop_sampling()
        for proc in self._window_profilers:
            self.reaper.stop_proc(proc, grace=30)
        self._window_profilers = []
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._profiler.wait(timeout=30)
            self.reaper.stop_proc(self._profiler, grace=5)
            log(f"{self.scope}: profile in {self.profile_path}")
            self._profiler = None
        if self.proc is not None:
            self.reaper.stop_proc(self.proc, grace=20)
        n = self.reaper.sweep_scope(self.scope)
        if n:
            log(f"{self.scope}: stopped {n} workload process(es) the operator left running")


class KopfFloor(Operator):
    """The same harness around bench/harness/kopf_floor.py: kopf writing Ready, nothing else."""

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",  # as a module: run as a script, bench/harness/operator.py would shadow stdlib's
            "bench.harness.kopf_floor",
            "-n",
            self.namespace,
            "--metrics-port",
            str(self.port),
        ]
