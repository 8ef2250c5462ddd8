"""Peers: supervisord and pm2 beside ``steward local`` and the library, same run, same work.

Every measure runs the peers one after the other in an order that changes per
round (or per N), with the same workloads: ``python -m http.server PORT`` and
the C listener (bench/tcp_listener.c). Times start when the command is issued.

* start -> first 200 — supervisord via ``supervisorctl start`` (returns after
  ``startsecs``) and via XML-RPC ``startProcess(name, False)``; ``pm2 start``
  (a pm2 CLI process, daemon already up); ``steward local FILE -o json`` (a fresh
  interpreter: start-up counted to its header line, reported apart); the
  library's ``Service.from_manifest(...).start()``; a bare ``Popen`` (reference).
* SIGKILL -> status shows it — supervisord ``getProcessInfo`` polled every 5 ms;
  ``pm2 jlist`` back to back (a Node process each; pm2's own reaction, the
  replacement's start time, is reported too); ``steward local``'s JSON rows; the
  library's ``status`` while ``supervise()`` runs in a thread.
* SIGKILL -> 200 again — ``restartPolicy: Always`` with ``backoff.initialSeconds: 0``,
  and with the default back-off (10 s) for Steward.
* N listeners all up (100 / 1,000 / 5,000; quick: 100) — time from the command to
  every port accepting, the supervising process's peak RSS (VmHWM) and CPU seconds,
  idle CPU over 60 s (quick 10 s) at N = 1,000 (quick 100); Steward with TCP probes
  (period 10 s) and without an endpoint (no probes), like the peers.
* command not found over 60 s (quick 15 s) — attempts, intervals, final state.

The operator's numbers come from P1 and P4 of the same run (or their last result
files), not measured again here.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.harness import plots
from bench.harness.cleanup import log
from bench.harness.cluster import msvc
from bench.harness.context import Bench
from bench.harness.peers.install import (
    PM2_VERSION,
    SUPERVISOR_VERSION,
    install_pm2,
    install_supervisor,
)
from bench.harness.peers.local import LocalSteward, status_file
from bench.harness.peers.measure import (
    Answer,
    Returned,
    cpu_seconds,
    free_ports,
    vm_hwm,
    wait_dead,
    wait_for,
    wait_ports,
)
from bench.harness.peers.pm2 import Pm2, cli_error, pm2_app
from bench.harness.peers.supervisord import RUNNING, Program, Supervisord, failed_spawns
from bench.harness.peers.table import (
    CRASH_MODES,
    FLEET_MODES,
    KEY,
    START_MODES,
    TITLE,
    operator_numbers,
    result,
    update_readme,
)
from bench.harness.report import ScenarioResult, fmt, results_dir
from bench.harness.timing import (
    free_port,
    http_status,
    poll_http_200,
    process_start_monotonic,
)

TIMEOUT = 60.0
SETTLE = 1.3
"""After the first 200, before a kill: past supervisord's startsecs and pm2's min_uptime."""
MB = 1024 * 1024
NOT_FOUND = "/nonexistent/steward-bench-command"


def sizes(quick: bool) -> tuple[int, ...]:
    """N of the fleet measure; ``STEWARD_BENCH_PEERS_SIZES=1000`` (comma-separated) for others."""
    env = os.environ.get("STEWARD_BENCH_PEERS_SIZES", "")
    if env.strip():
        return tuple(int(x) for x in env.split(",") if x.strip())
    return (100,) if quick else (100, 1000, 5000)


def quiet(_type: str, _reason: str, _message: str) -> None:
    """The library's event sink here: its Warnings would only interleave with the log."""


def web_argv(port: str) -> list[str]:
    return [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"]


def steward_cli() -> list[str]:
    script = Path(sys.executable).parent / "steward"
    return [str(script)] if script.exists() else [sys.executable, "-m", "steward.cli"]


def web_spec(port: int, backoff: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "daemon": {"command": web_argv("$(PORT)")},
        "endpoint": {"protocol": "http", "port": port, "healthCheck": {"http": {"path": "/"}}},
        "restartPolicy": "Always",
    }
    if backoff is not None:
        spec["backoff"] = {"initialSeconds": backoff}
    return spec


@dataclass
class Crashable:
    """One long-running web service under one supervisor, killed again every round."""

    mode: str
    port: int
    pid: Callable[[], int]
    noticed: Callable[[int, float], dict[str, float]]
    up: Callable[[], bool]


class Peers:
    """One run of the four measures; each peer set up and torn down inside its measure."""

    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.dir = bench.work_dir / "peers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sup_bin = install_supervisor()
        self.pm2_bin = install_pm2()
        q = bench.quick
        self.rounds, self.warmup = (5, 1) if q else (12, 1)
        self.default_rounds = 1 if q else 3
        self.sizes = sizes(q)
        self.idle_n = 1000 if 1000 in self.sizes else self.sizes[0]
        self.idle_window = 10.0 if q else 60.0
        self.cnf_window = 15.0 if q else 60.0
        self.rng = random.Random(18)

    # -- start -> first 200 ---------------------------------------------------
    def run_start(self) -> dict[str, list[dict[str, float]]]:
        n = self.warmup + self.rounds
        ports = {m: free_ports(n) for m in ("supervisorctl", "xmlrpc")}
        programs = [
            Program(f"{m}-{i}", web_argv(str(ports[m][i])))
            for m in ("supervisorctl", "xmlrpc")
            for i in range(n)
        ]
        sup = Supervisord(self.b.reaper, self.sup_bin, self.dir / "sup-start", "peers-sup-start")
        pm2 = Pm2(self.b.reaper, self.pm2_bin, self.dir / "pm2-start", "peers-pm2-start")
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in START_MODES}
        try:
            sup.start(programs)
            pm2.cmd("ping")  # the daemon is up before the first measure, as supervisord is
            for r in range(n):
                order = list(START_MODES)
                self.rng.shuffle(order)
                for mode in order:
                    try:
                        if mode in ("supervisorctl", "xmlrpc"):
                            out = self._start_sup(sup, mode, r, ports[mode][r])
                        elif mode == "pm2":
                            out = self._start_pm2(pm2, r)
                        else:
                            out = getattr(self, f"_start_{mode}")(r)
                    except Exception as exc:
                        log(f"peers: start {mode} round {r}: {type(exc).__name__}: {exc}")
                        continue
                    if r >= self.warmup:
                        samples[mode].append(out)
                log(
                    f"peers: start round {r + 1}/{n}: "
                    + " ".join(f"{m}={fmt(samples[m][-1]['total'])}" for m in order if samples[m])
                )
        finally:
            pm2.kill()
            sup.shutdown()
        return samples

    def _start_sup(self, sup: Supervisord, mode: str, r: int, port: int) -> dict[str, float]:
        name = f"{mode}-{r}"
        t0 = time.monotonic()
        if mode == "supervisorctl":
            ctl = self.b.reaper.spawn(
                [str(sup.bin / "supervisorctl"), "-c", str(sup.conf), "start", name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            waiter = Returned(ctl, TIMEOUT)
            t = poll_http_200(port, TIMEOUT)
            waiter.join(TIMEOUT)
            returned = waiter.at
            self.b.reaper.forget(ctl)
        else:
            sup.rpc().supervisor.startProcess(name, False)
            returned = time.monotonic()
            t = poll_http_200(port, TIMEOUT)
        sup.rpc().supervisor.stopProcess(name, True)
        if t is None or returned is None:
            raise RuntimeError(f"{name} never answered 200")
        return {"total": t - t0, "returned": returned - t0}

    def _start_pm2(self, pm2: Pm2, r: int) -> dict[str, float]:
        name, port = f"web-{r}", free_port()
        apps = [pm2_app(name, web_argv(str(port)))]
        t0 = time.monotonic()
        cli = pm2.spawn_start(apps, name)
        waiter = Returned(cli, TIMEOUT)
        t = poll_http_200(port, TIMEOUT)
        waiter.join(TIMEOUT)
        self.b.reaper.forget(cli)
        pm2.cmd("delete", name)
        if t is None or waiter.at is None:
            raise RuntimeError(f"pm2 {name} never answered 200")
        return {"total": t - t0, "returned": waiter.at - t0}

    def _start_local(self, r: int) -> dict[str, float]:
        port = free_port()
        f = self.dir / "start-local.yaml"
        f.write_text(yaml.safe_dump(msvc("web", web_spec(port, None))))
        argv = [*steward_cli(), "--state-dir", str(self.dir / "start-local"), "local", str(f)]
        local = LocalSteward(self.b.reaper, [*argv, "-o", "json"], "peers-local-start")
        t0 = time.monotonic()
        local.start()
        try:
            t = poll_http_200(port, TIMEOUT)
            wait_for(lambda: local.t_header is not None, 5)
        finally:
            local.stop(grace=15)
        if t is None or local.t_header is None:
            raise RuntimeError("steward local never answered 200")
        return {
            "total": t - t0,
            "startup": local.t_header - t0,
            "after_startup": t - local.t_header,
        }

    def _start_library(self, r: int) -> dict[str, float]:
        from steward.engine.service import Service

        manifest = msvc("web", web_spec(free_port(), None))
        t0 = time.monotonic()
        svc = Service.from_manifest(manifest, state_dir=self.dir / "start-library", events=quiet)
        ok = svc.start(timeout=TIMEOUT)
        t = time.monotonic()
        svc.stop(timeout=10)
        if not ok:
            raise RuntimeError(f"Service.start(): {svc.status.last_error}")
        return {"total": t - t0}

    def _start_raw(self, r: int) -> dict[str, float]:
        port = free_port()
        t0 = time.monotonic()
        proc = self.b.reaper.spawn(
            web_argv(str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            t = poll_http_200(port, TIMEOUT)
        finally:
            self.b.reaper.stop_proc(proc)
        if t is None:
            raise RuntimeError("raw never answered 200")
        return {"total": t - t0}

    # -- SIGKILL -> noticed -> 200 again -----------------------------------------
    def run_crash(self) -> dict[str, list[dict[str, float]]]:
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in CRASH_MODES}
        sup = Supervisord(self.b.reaper, self.sup_bin, self.dir / "sup-crash", "peers-sup-crash")
        pm2 = Pm2(self.b.reaper, self.pm2_bin, self.dir / "pm2-crash", "peers-pm2-crash")
        stop_library = threading.Event()
        close_library: Callable[[], None] | None = None
        local: LocalSteward | None = None
        try:
            port = free_port()
            sup.start([Program("web", web_argv(str(port)), autostart=True)])
            crashers = [self._sup_crashable(sup, port), self._pm2_crashable(pm2)]
            local, c_local = self._local_crashable("crash-local", 0)
            crashers.append(c_local)
            close_library, c_library = self._library_crashable("crash-library", 0, stop_library)
            crashers.append(c_library)
            by_mode = {c.mode: c for c in crashers}
            for r in range(self.warmup + self.rounds):
                order = list(CRASH_MODES)
                self.rng.shuffle(order)
                for mode in order:
                    try:
                        out = self._crash_once(by_mode[mode])
                    except Exception as exc:
                        log(f"peers: crash {mode} round {r}: {type(exc).__name__}: {exc}")
                        continue
                    if r >= self.warmup:
                        samples[mode].append(out)
                log(
                    f"peers: crash round {r + 1}/{self.warmup + self.rounds}: "
                    + " ".join(
                        f"{m}={fmt(samples[m][-1]['noticed'])}/{fmt(samples[m][-1].get('answering'))}"
                        for m in order
                        if samples[m]
                    )
                )
        finally:
            if close_library is not None:
                close_library()
            if local is not None:
                local.stop(grace=15)
            pm2.kill()
            sup.shutdown()
        for mode in ("local", "library"):
            samples[f"{mode}_default_backoff"] = []
        for r in range(self.default_rounds):
            for mode in ("local", "library") if r % 2 == 0 else ("library", "local"):
                try:
                    out = self._crash_default(mode, r)
                except Exception as exc:
                    log(f"peers: crash {mode} default back-off: {type(exc).__name__}: {exc}")
                    continue
                samples[f"{mode}_default_backoff"].append(out)
                log(f"peers: {mode} default back-off: {out}")
        return samples

    def _crash_once(self, c: Crashable) -> dict[str, float]:
        wait_for(c.up, TIMEOUT, 0.02)
        time.sleep(SETTLE)
        pid = c.pid()
        answer = Answer(c.port, TIMEOUT)
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)  # so the poll cannot reach the dying server
        answer.start()
        out = c.noticed(pid, t_kill)
        answer.join(TIMEOUT + 5)
        if answer.at is not None:
            out["answering"] = answer.at - t_kill
        return out

    def _sup_crashable(self, sup: Supervisord, port: int) -> Crashable:
        rpc = sup.rpc()

        def up() -> bool:
            i = rpc.supervisor.getProcessInfo("web")
            return bool(i["state"] == RUNNING and http_status(port) == 200)

        def noticed(pid: int, t_kill: float) -> dict[str, float]:
            def changed() -> float | None:
                i = rpc.supervisor.getProcessInfo("web")
                return time.monotonic() if i["state"] != RUNNING or i["pid"] != pid else None

            return {"noticed": wait_for(changed, TIMEOUT) - t_kill}

        return Crashable(
            "supervisord",
            port,
            lambda: int(rpc.supervisor.getProcessInfo("web")["pid"]),
            noticed,
            up,
        )

    def _pm2_crashable(self, pm2: Pm2) -> Crashable:
        port = free_port()
        pm2.start([pm2_app("web", web_argv(str(port)))], "crash")

        def app() -> dict[str, Any]:
            return next((a for a in pm2.jlist() if a.get("name") == "web"), {})

        def up() -> bool:
            a = app()
            return a.get("pm2_env", {}).get("status") == "online" and http_status(port) == 200

        def noticed(pid: int, t_kill: float) -> dict[str, float]:
            while True:
                t_issue = time.monotonic()
                a = app()
                t = time.monotonic()
                env = a.get("pm2_env", {})
                if a.get("pid") != pid or env.get("status") != "online":
                    out = {"noticed": t - t_kill, "jlist_issued": t_issue - t_kill}
                    new = a.get("pid")
                    started = process_start_monotonic(new) if isinstance(new, int) and new else None
                    if started is not None:
                        out["reacted"] = started - t_kill
                    return out
                if t - t_kill > TIMEOUT:
                    raise TimeoutError("pm2 never showed the crash")

        return Crashable("pm2", port, lambda: int(app()["pid"]), noticed, up)

    def _local_crashable(self, name: str, backoff: float | None) -> tuple[LocalSteward, Crashable]:
        port = free_port()
        state = self.dir / f"{name}-state"
        f = self.dir / f"{name}.yaml"
        f.write_text(yaml.safe_dump(msvc(name, web_spec(port, backoff))))
        argv = [*steward_cli(), "--state-dir", str(state), "local", str(f), "-o", "json"]
        local = LocalSteward(self.b.reaper, argv, f"peers-{name}").start()
        full = f"default/{name}"

        def up() -> bool:
            st = status_file(state, name)
            return st.get("state") == "active" and http_status(port) == 200

        def pid() -> int:
            return int(status_file(state, name)["runtime"]["pid"])

        def noticed(old: int, t_kill: float) -> dict[str, float]:
            row = local.wait_row(
                lambda d: d.get("name") == full and d.get("state") != "active", TIMEOUT, t_kill
            )
            if row is None:
                raise TimeoutError("steward local never showed the crash")
            return {"noticed": row.t - t_kill}

        return local, Crashable("local", port, pid, noticed, up)

    def _library_crashable(
        self, name: str, backoff: float | None, stop: threading.Event
    ) -> tuple[Callable[[], None], Crashable]:
        from steward.api.state import ServiceState
        from steward.engine.service import Service

        port = free_port()
        svc = Service.from_manifest(
            msvc(name, web_spec(port, backoff)), state_dir=self.dir / f"{name}-state", events=quiet
        )
        if not svc.start(timeout=TIMEOUT):
            raise RuntimeError(f"library start: {svc.status.last_error}")
        loop = threading.Thread(target=svc.supervise, args=(stop,), daemon=True)
        loop.start()

        def close() -> None:
            if not stop.is_set():
                stop.set()
                loop.join(timeout=30)
                svc.stop(timeout=10)

        self.b.reaper.on_close(f"library {name}", close)

        def up() -> bool:
            return svc.status.state is ServiceState.ACTIVE and http_status(port) == 200

        def noticed(pid: int, t_kill: float) -> dict[str, float]:
            restarts = svc.status.restarts

            def changed() -> float | None:
                st = svc.status
                moved = st.state is not ServiceState.ACTIVE or st.restarts != restarts
                return time.monotonic() if moved else None

            return {"noticed": wait_for(changed, TIMEOUT, 0.001) - t_kill}

        return close, Crashable(
            "library", port, lambda: int(svc.status.runtime["pid"]), noticed, up
        )

    def _crash_default(self, mode: str, r: int) -> dict[str, float]:
        """A fresh service with the default back-off (10 s), killed once."""
        name = f"dflt-{mode}-{r}"
        if mode == "local":
            local, c = self._local_crashable(name, None)
            try:
                return self._crash_once(c)
            finally:
                local.stop(grace=15)
        close, c = self._library_crashable(name, None, threading.Event())
        try:
            return self._crash_once(c)
        finally:
            close()

    # -- N all up ---------------------------------------------------------------
    def run_fleet(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {m: {} for m in FLEET_MODES}
        gave_up: set[str] = set()
        listener = self.b.listener()
        for i, n in enumerate(self.sizes):
            order = FLEET_MODES[i % len(FLEET_MODES) :] + FLEET_MODES[: i % len(FLEET_MODES)]
            for mode in order:
                if mode in gave_up:
                    continue
                timeout = 120.0 if n <= 1000 else 600.0
                try:
                    res = self._fleet_one(mode, n, listener, timeout)
                except Exception as exc:
                    log(f"peers: fleet {mode} N={n}: {type(exc).__name__}: {exc}")
                    res = {"n": n, "error": f"{type(exc).__name__}: {exc}"}
                out[mode][str(n)] = res
                log(f"peers: fleet {mode} N={n}: {res}")
                all_up = res.get("all_up_seconds")
                if all_up is None or all_up > 120:
                    gave_up.add(mode)  # does not cope: no bigger N for it
        return out

    def _fleet_one(self, mode: str, n: int, listener: list[str], timeout: float) -> dict[str, Any]:
        ports = free_ports(n)
        work = self.dir / f"fleet-{mode}-{n}"
        work.mkdir(parents=True, exist_ok=True)
        scope = f"peers-fleet-{mode}-{n}"
        extra: dict[str, Any] = {}
        stop: Callable[[], None]
        if mode == "supervisord":
            sup = Supervisord(self.b.reaper, self.sup_bin, work, scope)
            progs = [Program(f"l{i}", [*listener, str(p)], True) for i, p in enumerate(ports)]
            t0 = sup.start(progs, wait=False)
            pid_of: Callable[[], int] = lambda: sup.pid  # noqa: E731
            stop = sup.shutdown
        elif mode == "pm2":
            pm2 = Pm2(self.b.reaper, self.pm2_bin, work, scope)
            apps = [pm2_app(f"l{i}", [*listener, str(p)]) for i, p in enumerate(ports)]
            t0 = time.monotonic()
            cli = pm2.spawn_start(apps, "fleet")
            pid_of = pm2.daemon_pid
            stop = pm2.kill
        else:
            mdir = work / "manifests"
            mdir.mkdir(exist_ok=True)
            for i, p in enumerate(ports):
                if mode == "local":
                    spec: dict[str, Any] = {
                        "daemon": {"command": [*listener, "$(PORT)"]},
                        "endpoint": {
                            "protocol": "tcp",
                            "port": p,
                            "healthCheck": {"tcp": {}, "periodSeconds": 10},
                        },
                    }
                else:
                    spec = {"daemon": {"command": [*listener, str(p)]}}
                (mdir / f"l{i:04d}.yaml").write_text(yaml.safe_dump(msvc(f"l{i:04d}", spec)))
            argv = [*steward_cli(), "--state-dir", str(work / "state"), "local", str(mdir), "-q"]
            local = LocalSteward(self.b.reaper, argv, scope)
            t0 = time.monotonic()
            local.start()
            pid_of = lambda: local.pid  # noqa: E731
            stop = local.stop
        try:
            t_all = wait_ports(ports, timeout)
            pid = pid_of()
            if mode == "pm2":
                cli.wait(timeout=timeout)
                extra["cli_returned_seconds"] = round(time.monotonic() - t0, 3)
                self.b.reaper.forget(cli)
                pid = pid_of()
            res: dict[str, Any] = {
                "n": n,
                "all_up_seconds": round(t_all - t0, 3) if t_all is not None else None,
                "cpu_seconds_to_all_up": round(cpu_seconds(pid), 2),
                "pid": pid,
                **extra,
            }
            if n == self.idle_n and t_all is not None:
                time.sleep(2)
                c0, w0 = cpu_seconds(pid), time.monotonic()
                time.sleep(self.idle_window)
                c1, w1 = cpu_seconds(pid), time.monotonic()
                res["idle_cpu_pct"] = round(100 * (c1 - c0) / (w1 - w0), 2)
                res["idle_window_s"] = round(w1 - w0, 1)
            res["rss_peak_mb"] = round(vm_hwm(pid) / MB, 1)
        finally:
            t_stop = time.monotonic()
            stop()
            left = self.b.reaper.sweep_scope(scope)
        res["stop_seconds"] = round(time.monotonic() - t_stop, 2)
        if mode.startswith("local") and local.killed:
            res["stop_sigkilled_after_grace"] = True
        if left:
            res["leftovers_killed"] = left
        return res

    # -- command not found --------------------------------------------------------
    def run_not_found(self) -> dict[str, dict[str, Any]]:
        work = self.dir / "cnf"
        sup = Supervisord(self.b.reaper, self.sup_bin, work / "sup", "peers-cnf-sup")
        pm2 = Pm2(self.b.reaper, self.pm2_bin, work / "pm2", "peers-cnf-pm2")
        f = work / "nf.yaml"
        f.write_text(yaml.safe_dump(msvc("nf", {"daemon": {"command": [NOT_FOUND, "x"]}})))
        argv = [*steward_cli(), "--state-dir", str(work / "state"), "local", str(f), "-o", "json"]
        local = LocalSteward(self.b.reaper, argv, "peers-cnf-local")
        out: dict[str, dict[str, Any]] = {}
        try:
            t0 = sup.start([Program("nf", [NOT_FOUND, "x"], autostart=True)])
            local.start()
            t_pm2 = time.monotonic()
            r = pm2.start([pm2_app("nf", [NOT_FOUND, "x"])], "nf")
            cli_seconds = time.monotonic() - t_pm2
            # Each one's window opens with its first attempt (steward local imports first).
            wait_for(lambda: local.t_header is not None, TIMEOUT, 0.05)
            t_local = local.t_header or t0
            time.sleep(max(0.0, max(t0, t_local) + self.cnf_window - time.monotonic()))
            info = sup.info("nf")
            out["supervisord"] = {
                "attempts": failed_spawns(sup.log_file),
                "final_state": info["statename"],
                "final_reason": info.get("spawnerr", ""),
            }
            apps = [a for a in pm2.jlist() if a.get("name") == "nf"]
            env = apps[0].get("pm2_env", {}) if apps else {}
            cli_msg = cli_error(r.stdout + r.stderr)
            out["pm2"] = {
                "attempts": [0.0] * (int(env.get("restart_time", 0)) + 1) if apps else [],
                "final_state": env.get("status", "not registered"),
                "final_reason": cli_msg,
                "cli_seconds": round(cli_seconds, 2),
            }
            rows = [r for r in local.rows if r.data.get("name") == "default/nf"]
            attempts: list[float] = []
            last_next = None
            for row in rows:
                nxt = row.data.get("nextAttempt")
                if row.data.get("state") == "error" and nxt and nxt != last_next:
                    attempts.append(row.t)
                    last_next = nxt
            final = rows[-1].data if rows else {}
            out["local"] = {
                "attempts": [round(a - attempts[0], 3) for a in attempts],
                "final_state": final.get("state", ""),
                "final_reason": f"{final.get('reason', '')}: {final.get('message', '')}",
            }
        finally:
            local.stop(grace=15)
            pm2.kill()
            sup.shutdown()
        for v in out.values():
            a = v["attempts"]
            v["window_s"] = self.cnf_window
            v["intervals"] = [round(y - x, 3) for x, y in itertools.pairwise(a)]
        return out

    # -- the run ------------------------------------------------------------------
    def run(self) -> ScenarioResult:
        t_start = time.monotonic()
        log(f"peers: supervisor {SUPERVISOR_VERSION} and pm2 {PM2_VERSION} ready")
        data: dict[str, Any] = {
            "versions": {
                "supervisor": SUPERVISOR_VERSION,
                "pm2": PM2_VERSION,
                "node": _node_version(),
            },
            "rounds": self.rounds,
        }
        data["start"] = self.run_start()
        data["crash"] = self.run_crash()
        data["fleet"] = self.run_fleet()
        data["not_found"] = self.run_not_found()
        data["operator"] = operator_numbers(self.b.quick)
        res = result(data, self.idle_n, time.monotonic() - t_start)
        plot(data, self.b.quick)
        if not self.b.quick:
            update_readme(res)
        return res


def _node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except OSError:
        return ""


def plot(data: dict[str, Any], quick: bool) -> None:
    s = data["stats"]
    fig, axes = plots.figure(2, 2, size=(13, 9))
    groups = [
        (axes[0][0], "start -> first 200", s["start"], [*list(START_MODES), "local_after_startup"]),
        (axes[0][1], "SIGKILL -> status shows it", s["crash_noticed"], list(CRASH_MODES)),
        (
            axes[1][0],
            "SIGKILL -> 200 again",
            s["crash_answering"],
            [*CRASH_MODES, "local_default_backoff", "library_default_backoff"],
        ),
    ]
    for ax, title, st, modes in groups:
        p50 = [st.get(m, {}).get("p50") or 0.0 for m in modes]
        p95 = [st.get(m, {}).get("p95") or 0.0 for m in modes]
        ax.barh(modes, p95, color="lightgrey", label="p95")
        ax.barh(modes, p50, color="tab:blue", label="p50")
        ax.set(title=title, xlabel="s")
        ax.legend(fontsize=8)
    ax = axes[1][1]
    for mode in FLEET_MODES:
        pts = sorted(
            (int(n), v["all_up_seconds"])
            for n, v in data["fleet"].get(mode, {}).items()
            if v.get("all_up_seconds") is not None
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
    ax.set(title="N listeners: command -> all accepting", xlabel="N", ylabel="s", xscale="log")
    ax.legend(fontsize=8)
    plots.save(fig, results_dir(quick) / f"{KEY}.png", TITLE)


def run(bench: Bench) -> ScenarioResult:
    return Peers(bench).run()
