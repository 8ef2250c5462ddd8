"""A sandboxed daemon gets no more power than a Pod: own uid, clean env, limits, a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from steward import Service, ServiceState
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.sandbox import Limits, Sandbox, UidAllocator
from steward.runtimes.sandbox.cgroups import Cgroup
from tests.support import waits
from tests.support.manifests import manifest
from tests.support.processes import TEST_CGROUP_PARENT, alive
from tests.support.sandbox import PY, Factory

SLEEP = [PY, "-c", "import time; time.sleep(300)"]
TOKEN_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    waits.wait_for(cond, timeout, step=0.05, what=what or repr(cond))


def script(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def log_text(rt: object) -> str:
    return "\n".join(rt.logs())  # type: ignore[attr-defined]


def status_ids(pid: int) -> tuple[int, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in lines if line.startswith("Uid:")).split()[1]
    gid = next(line for line in lines if line.startswith("Gid:")).split()[1]
    return int(uid), int(gid)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if item)


# ---------------------------------------------------------------- identity and env
def test_service_runs_as_its_own_uid_with_a_clean_env(
    sandbox_root: Path, allocator: UidAllocator
) -> None:
    uid = allocator.allocate("team/web")
    sandbox = Sandbox(uid=uid, gid=uid, cgroup_parent=TEST_CGROUP_PARENT, state_root=sandbox_root)
    os.environ["STEWARD_OPERATOR_ONLY"] = "operator-secret"
    os.environ["KUBERNETES_SERVICE_HOST"] = "10.0.0.1"
    try:
        svc = Service.from_manifest(
            manifest(
                "web",
                {
                    "daemon": {
                        "command": [PY, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"],
                        "env": [{"name": "GREETING", "value": "hi"}],
                    },
                    "endpoint": {"protocol": "http", "healthCheck": {"http": {"path": "/"}}},
                },
                namespace="team",
            ),
            state_dir=sandbox_root,
            sandbox=sandbox,
        )
        try:
            assert svc.start(timeout=30), svc.status.last_error
            pid = svc.status.runtime["pid"]
            assert status_ids(pid) == (uid, uid)
            assert svc.status.runtime["uid"] == uid
            assert svc.status.runtime["limitsEnforced"] is True
            env = environ(pid)
            home = sandbox_root / "services/team/web/runtime/home"
            assert set(env) == {"PATH", "HOME", "LANG", "PORT", "GREETING", "STEWARD_LAUNCH_ID"}
            assert env["HOME"] == str(home)
            assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            assert env["LANG"] == "C.UTF-8"
            assert env["PORT"] == str(svc.status.endpoint.port)
            assert os.readlink(f"/proc/{pid}/cwd") == str(home)
            groups = [
                x
                for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("Groups:")
            ]
            assert groups[0].split() == ["Groups:"]
            assert stat.S_IMODE(home.stat().st_mode) == 0o700 and home.stat().st_uid == uid
        finally:
            assert svc.stop(timeout=10)
        assert not psutil.pid_exists(pid)
    finally:
        del os.environ["STEWARD_OPERATOR_ONLY"], os.environ["KUBERNETES_SERVICE_HOST"]


PROBE = """
    import os, sys
    for path in sys.argv[1:]:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path).read()
            print("READ", path, flush=True)
        except OSError as exc:
            print("DENIED", path, exc.errno, flush=True)
    print("DONE", flush=True)
"""


def test_service_cannot_read_the_operators_files_or_its_neighbours(
    daemon: Factory, sandbox_root: Path
) -> None:
    operator_file = sandbox_root / "operator-only.json"
    fd = os.open(operator_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"token": "root"}')
    os.close(fd)
    neighbour = daemon("neighbour", {"command": SLEEP})
    neighbour.start()
    made_token = not (TOKEN_DIR / "token").exists()
    if made_token:
        TOKEN_DIR.mkdir(parents=True, exist_ok=True)
        (TOKEN_DIR / "token").write_text("fake-service-account-token")
        (TOKEN_DIR / "token").chmod(0o600)
    try:
        n_dir = neighbour.ctx.runtime_dir
        targets = [
            operator_file,
            sandbox_root,
            sandbox_root / "services",
            sandbox_root / "services/team",
            n_dir.parent,
            n_dir,
            n_dir / "home",
            n_dir / "daemon.pid",
            n_dir / "daemon.log",
            TOKEN_DIR / "token",
        ]
        probe = daemon("probe", {"command": [*script(PROBE), *map(str, targets)]})
        probe.start()
        own = probe.ctx.runtime_dir / "home"
        wait_for(lambda: "DONE" in log_text(probe), what="the probe's report")
        text = log_text(probe)
        for t in targets:
            assert f"DENIED {t} 13" in text, text  # EACCES
        assert stat.S_IMODE(own.stat().st_mode) == 0o700
        for f in (probe.pid_file, probe.log_file):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.stat().st_uid == 0
    finally:
        if made_token:
            (TOKEN_DIR / "token").unlink()
            for d in (TOKEN_DIR, TOKEN_DIR.parent, TOKEN_DIR.parent.parent):
                if not any(d.iterdir()):
                    d.rmdir()


def test_pid_file_holds_no_secret(daemon: Factory) -> None:
    secret = "s3cret-value-0123"
    rt = daemon(
        "secretive",
        {"command": [PY, "-c", "import time; time.sleep(300)", "--token=$(TOKEN)"]},
        env={"TOKEN": secret},
        secrets=frozenset({secret}),
    )
    rt.start()
    for f in rt.ctx.runtime_dir.iterdir():
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f
    record = json.loads(rt.pid_file.read_text())
    assert "cmdline" not in record and len(record["cmdline_hash"]) == 64
    assert stat.S_IMODE(rt.pid_file.stat().st_mode) == 0o600
    proc = psutil.Process(record["pid"])
    wait_for(lambda: proc.cmdline()[0] == PY, what="the exec after the cgroup hold")
    assert f"--token={secret}" in proc.cmdline()  # it did get it
    assert rt.adopt().value == "adopted"  # identity checked through the hash


# ---------------------------------------------------------------- limits
FORK_BOMB = """
    import os, time
    end = time.monotonic() + 20
    forks = 0
    while time.monotonic() < end:
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            forks += 1
        except OSError as exc:
            print("FORK FAILED", forks, exc.errno, flush=True)
            break
    time.sleep(300)
"""


def test_fork_bomb_is_held_by_pids_max(daemon: Factory) -> None:
    rt = daemon("bomb", {"command": script(FORK_BOMB)}, limits=Limits(pids=64))
    rt.start()
    wait_for(lambda: "FORK FAILED" in log_text(rt), what="fork to fail at pids.max")
    cg = rt._record_cgroup(rt_record(rt))
    assert cg is not None
    current = int((cg.dirs["pids"] / "pids.current").read_text())
    assert current <= 64
    line = next(x for x in log_text(rt).splitlines() if x.startswith("FORK FAILED"))
    print(f"\nfork bomb held: {line} (pids.current={current})")
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks
    rt.stop(force=True)
    assert not cg.exists
    assert rt.observe().state is ServiceState.INACTIVE


HOG = """
    import time
    chunks = []
    while True:
        chunks.append(bytearray(1 << 20))
        time.sleep(0.001)
"""


def test_memory_hog_is_oom_killed_and_the_reason_says_so(daemon: Factory) -> None:
    rt = daemon("hog", {"command": script(HOG)}, limits=Limits(memory_bytes=48 << 20))
    rt.start()
    pid = rt_record(rt).pid
    wait_for(lambda: not alive(pid), timeout=60, what="the hog to be killed")
    died = time.monotonic()
    obs = rt.observe()
    latency = time.monotonic() - died
    print(f"\nOOM reported {latency * 1000:.0f} ms after the process died: {obs.message}")
    assert obs.state is ServiceState.ERROR
    assert obs.reason == "OOMKilled", obs
    assert obs.exit_code == 137
    assert "out of memory" in obs.message and str(48 << 20) in obs.message
    assert obs.details["oom"]["kills"] >= 1
    assert rt.observe().reason == "OOMKilled"  # stays so: the exit is recorded


def test_limits_from_the_spec_are_capped_by_the_sandbox(daemon: Factory) -> None:
    rt = daemon(
        "capped",
        {"command": SLEEP, "resources": {"memory": "1Gi", "cpu": "250m", "pids": 100}},
        limits=Limits(memory_bytes=64 << 20, pids=500),
    )
    rt.start()
    cg = rt._record_cgroup(rt_record(rt))
    assert cg is not None
    assert int((cg.dirs["memory"] / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert (cg.dirs["pids"] / "pids.max").read_text().strip() == "100"
    assert (cg.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (cg.dirs["cpu"] / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert rt.observe().details["limits"] == {
        "memoryBytes": 64 << 20,
        "cpuMillicores": 250,
        "pids": 100,
    }


def test_unusable_cgroups_are_reported_and_refused_when_required(daemon: Factory) -> None:
    # A parent that cannot be a directory: mkdir fails for real (ENOTDIR).
    broken = f"{TEST_CGROUP_PARENT}-broken/cgroup.procs"
    rt = daemon("nolimits", {"command": SLEEP}, cgroup_parent=broken)
    rt.start()
    details = rt.observe().details
    assert details["limitsEnforced"] is False
    assert "cannot set up cgroup" in details["limitsUnavailable"]
    rt.stop(force=True)
    strict = daemon("strict", {"command": SLEEP}, cgroup_parent=broken, require_limits=True)
    with pytest.raises(RuntimeFailure) as exc:
        strict.start()
    assert exc.value.reason == "LimitsUnavailable"
    assert not strict.pid_file.exists()
    for d in Cgroup.plan(f"{TEST_CGROUP_PARENT}-broken", "").dirs.values():
        if d.exists():
            d.rmdir()


# ---------------------------------------------------------------- stop
ESCAPE = """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open("escaped.pid", "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    time.sleep(300)
"""


def test_double_forked_grandchild_is_gone_after_stop(daemon: Factory) -> None:
    rt = daemon("escape", {"command": script(ESCAPE)})
    rt.start()
    marker = rt.ctx.runtime_dir / "home" / "escaped.pid"
    wait_for(lambda: marker.exists() and marker.read_text(), what="the grandchild")
    grandchild = int(marker.read_text())
    main = rt_record(rt).pid
    assert os.getsid(grandchild) != main and psutil.Process(grandchild).ppid() != main
    cg = rt._record_cgroup(rt_record(rt))
    assert cg is not None and grandchild in cg.pids()
    rt.stop(grace=1)
    assert not alive(grandchild)
    assert not cg.exists
    assert rt.observe().state is ServiceState.INACTIVE


def test_stop_fails_while_anything_survives_in_the_cgroup(
    daemon: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something keeps putting processes into the cgroup: it is never empty, stop says so."""
    rt = daemon("crowded", {"command": SLEEP})
    rt.start()
    cg = rt._record_cgroup(rt_record(rt))
    assert cg is not None
    # A root process outside the cgroup forks children into it as fast as it can: killed
    # ones are replaced at once, so the cgroup is never empty while it runs.
    crowd = subprocess.Popen(
        [sys.executable, "-c", CROWD, *(str(d / "cgroup.procs") for d in cg.dirs.values())]
    )
    monkeypatch.setattr(Cgroup, "kill", _short_kill)
    try:
        wait_for(lambda: len(cg.pids()) > 1, what="the crowd")
        with pytest.raises(RuntimeFailure) as exc:
            rt.stop(force=True)
        assert exc.value.reason == "StopFailed"
        assert "survive" in str(exc.value)
        obs = rt.observe()
        assert obs.running and obs.reason == "StopFailed"
    finally:
        crowd.kill()
        crowd.wait()
    rt.stop(force=True)
    assert not cg.exists
    assert not rt.observe().running


CROWD = """
import os, sys, time
end = time.monotonic() + 30
while time.monotonic() < end:
    if os.fork() == 0:
        for path in sys.argv[1:]:
            with open(path, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(30)
        os._exit(0)
    while True:  # reap what was killed
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
"""

_real_kill = Cgroup.kill


def _short_kill(self: Cgroup, timeout: float = 10.0) -> bool:
    return _real_kill(self, timeout=min(timeout, 1.0))


# ---------------------------------------------------------------- logs
FLOOD = """
    import sys, time
    line = b"x" * 8191 + b"\\n"
    end = time.monotonic() + 4
    while time.monotonic() < end:
        sys.stdout.buffer.write(line)
    sys.stdout.flush()
    time.sleep(300)
"""


def test_log_flood_stays_bounded_as_it_grows(daemon: Factory) -> None:
    max_bytes = 1024 * 1024
    rt = daemon(
        "flood",
        {"command": script(FLOOD), "log": {"maxBytes": max_bytes, "backups": 2}},
    )
    rt.start()
    biggest = 0
    written = 0
    deadline = time.monotonic() + 6
    files = [rt.log_file, *(rt.log_file.with_name(f"daemon.log.{i}") for i in (1, 2, 3))]
    while time.monotonic() < deadline:  # nobody calls observe(): the writer rotates itself
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                biggest = max(biggest, f.stat().st_size)
        time.sleep(0.005)
    written = sum(f.stat().st_size for f in files if f.exists())
    print(f"\nlog flood: largest file {biggest} bytes (maxBytes {max_bytes}), {written} kept")
    assert biggest <= max_bytes + 65536
    assert rt.log_file.with_name("daemon.log.2").exists()
    assert not rt.log_file.with_name("daemon.log.3").exists()


# ---------------------------------------------------------------- uids
def test_two_services_never_share_a_uid(sandbox_root: Path) -> None:
    from tests.support.processes import TEST_UID_SIZE, TEST_UID_START

    state = sandbox_root / "uids"
    a = UidAllocator(TEST_UID_START, TEST_UID_SIZE, state)
    b = UidAllocator(TEST_UID_START, TEST_UID_SIZE, state)
    got: dict[str, list[int]] = {"a": [], "b": []}

    def take(name: str, alloc: UidAllocator) -> None:
        for i in range(40):
            got[name].append(alloc.allocate(f"ns/svc-{name}-{i}"))

    threads = [threading.Thread(target=take, args=(n, x)) for n, x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # and a separate process, through the flock
    code = (
        "import sys; from steward.runtimes.sandbox import UidAllocator; "
        f"print(UidAllocator({TEST_UID_START}, {TEST_UID_SIZE}, sys.argv[1]).allocate('ns/other'))"
    )
    other = int(subprocess.check_output([os.sys.executable, "-c", code, str(state)]).strip())
    uids = [*got["a"], *got["b"], other]
    assert len(set(uids)) == len(uids) == 81
    assert all(TEST_UID_START <= u < TEST_UID_START + TEST_UID_SIZE for u in uids)
    assert a.allocate("ns/svc-a-3") == got["a"][3]  # stable
    assert stat.S_IMODE((state / "uids.json").stat().st_mode) == 0o600
    freed = b.release("ns/svc-a-3")
    assert freed == got["a"][3]
    assert a.allocate("ns/new") == freed  # reused only once released


def rt_record(rt: object):  # type: ignore[no-untyped-def]
    from steward.runtimes.process import ProcessRecord

    record = ProcessRecord.load(rt.pid_file)  # type: ignore[attr-defined]
    assert record is not None
    return record
