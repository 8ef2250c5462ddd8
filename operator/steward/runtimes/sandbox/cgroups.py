"""A cgroup per service: limits, membership, OOM detection and killing everything in it.

cgroup v1 (here: one hierarchy per controller) uses ``memory``, ``pids``, ``cpu``
and ``freezer``; v2 one unified directory. Either way a service's cgroup is
``<controller root>/<the operator's own cgroup>/<parent>/<name>``: nested under
the operator's cgroup (delegation, the operator's own limits still bind; inside a
container with its cgroup namespace that is ``/<parent>/<name>``). The directories
are recorded with the process, so a later operator process (maybe in another
cgroup) finds the same ones.

Interfaces as documented in the kernel's admin-guide (cgroup-v1/memory, pids,
freezer-subsystem, sched-bwc; cgroup-v2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from steward.runtimes.sandbox.model import Limits

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD_US = 100_000


class CgroupUnavailable(Exception):
    """Cgroups cannot be used here (no write access, a controller missing); says why."""


@dataclass(frozen=True)
class _Mounts:
    v1: dict[str, Path]
    """controller -> mount point of a v1 hierarchy that has it."""
    v2: Path | None


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> _Mounts:
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open(mountinfo) as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rest = right.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            point = Path(fields[4].replace("\\040", " "))
            if rest[0] == "cgroup2":
                if v2 is None or point == ROOT:
                    v2 = point
            elif rest[0] == "cgroup":
                for opt in rest[2].split(","):
                    if opt in V1_CONTROLLERS or opt == "cpuacct":
                        v1.setdefault(opt, point)
    return _Mounts(v1, v2)


def _own_paths(proc_cgroup: str = "/proc/self/cgroup") -> tuple[dict[str, str], str | None]:
    """This process's cgroup path per v1 controller, and its v2 path."""
    v1: dict[str, str] = {}
    v2: str | None = None
    with open(proc_cgroup) as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                v2 = path
            for c in controllers.split(","):
                v1[c] = path
    return v1, v2


def _join(root: Path, *parts: str) -> Path:
    out = root
    for part in parts:
        out = out / part.strip("/") if part.strip("/") else out
    return out


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


def _pids(path: Path) -> set[int]:
    try:
        return {int(x) for x in _read(path / "cgroup.procs").split()}
    except FileNotFoundError:
        return set()


@dataclass
class Cgroup:
    """One service's cgroup: a directory per v1 controller, or one v2 directory."""

    version: int
    dirs: dict[str, Path] = field(default_factory=dict)
    """v1: controller -> directory; v2: {"unified": directory}."""

    # ---------------------------------------------------------------- setup
    @classmethod
    def plan(cls, parent: str, name: str) -> Cgroup:
        """Where this service's cgroup goes; CgroupUnavailable when no usable hierarchy."""
        mounts = _mounts()
        own_v1, own_v2 = _own_paths()
        missing = [c for c in V1_CONTROLLERS if c not in mounts.v1]
        if len(missing) < len(V1_CONTROLLERS):  # a v1 (or hybrid) machine: v1 controllers
            if missing:
                raise CgroupUnavailable(f"cgroup v1 controllers not mounted: {', '.join(missing)}")
            return cls(
                1,
                {c: _join(mounts.v1[c], own_v1.get(c, "/"), parent, name) for c in V1_CONTROLLERS},
            )
        if mounts.v2 is None or own_v2 is None:
            raise CgroupUnavailable("no cgroup hierarchy is mounted")
        try:
            available = set(_read(mounts.v2 / "cgroup.controllers").split())
        except OSError as exc:
            raise CgroupUnavailable(f"cannot read {mounts.v2}/cgroup.controllers: {exc}") from None
        absent = [c for c in V2_CONTROLLERS if c not in available]
        if absent:
            raise CgroupUnavailable(f"cgroup v2 controllers not available: {', '.join(absent)}")
        return cls(2, {"unified": _join(mounts.v2, own_v2, parent, name)})

    @classmethod
    def restore(cls, version: int, dirs: dict[str, str]) -> Cgroup:
        return cls(version, {k: Path(v) for k, v in dirs.items()})

    def record(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.dirs.items()}

    def create(self, limits: Limits) -> None:
        """Make the directories and write the limits; CgroupUnavailable (and nothing left) if
        that is not possible."""
        try:
            if self.version == 1:
                self._create_v1(limits)
            else:
                self._create_v2(limits)
        except OSError as exc:
            self.remove()
            raise CgroupUnavailable(
                f"cannot set up cgroup {self.describe()}: {exc.strerror or exc}"
            ) from None

    def _create_v1(self, limits: Limits) -> None:
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        mem, pids, cpu = self.dirs["memory"], self.dirs["pids"], self.dirs["cpu"]
        if limits.memory_bytes is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to add
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        _write(pids / "pids.max", str(limits.pids) if limits.pids is not None else "max")
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        quota = (
            limits.cpu_millicores * CFS_PERIOD_US // 1000
            if limits.cpu_millicores is not None
            else -1
        )
        _write(cpu / "cpu.cfs_quota_us", str(max(quota, 1000) if quota != -1 else -1))

    def _create_v2(self, limits: Limits) -> None:
        d = self.dirs["unified"]
        # Enable the controllers on the way down (cgroup.subtree_control of each ancestor).
        root = d
        while root.parent != root and (root.parent / "cgroup.controllers").exists():
            root = root.parent
        chain: list[Path] = []
        p = d.parent
        while p != root.parent and len(chain) < 64:
            chain.append(p)
            p = p.parent
        d.mkdir(parents=True, exist_ok=True)
        for ancestor in reversed(chain):
            enabled = set(_read(ancestor / "cgroup.subtree_control").split())
            want = [c for c in V2_CONTROLLERS if c not in enabled]
            if want:
                _write(ancestor / "cgroup.subtree_control", " ".join(f"+{c}" for c in want))
        if limits.memory_bytes is not None:
            _write(d / "memory.max", str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
        _write(d / "pids.max", str(limits.pids) if limits.pids is not None else "max")
        quota = (
            str(max(limits.cpu_millicores * CFS_PERIOD_US // 1000, 1000))
            if limits.cpu_millicores is not None
            else "max"
        )
        _write(d / "cpu.max", f"{quota} {CFS_PERIOD_US}")

    def describe(self) -> str:
        if self.version == 2:
            return str(self.dirs["unified"])
        return str(self.dirs.get("pids") or next(iter(self.dirs.values()), ""))

    # ---------------------------------------------------------------- members
    def add(self, pid: int) -> None:
        """Move ``pid`` into every directory of the cgroup (its children follow it)."""
        for d in self.dirs.values():
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        """Every process in the cgroup (any of its directories)."""
        out: set[int] = set()
        for d in self.dirs.values():
            out |= _pids(d)
        return out

    @property
    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in this cgroup."""
        path = (
            self.dirs["unified"] / "memory.events"
            if self.version == 2
            else self.dirs["memory"] / "memory.oom_control"
        )
        try:
            for line in _read(path).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, KeyError, ValueError):
            pass
        if self.version == 1:  # kernels before 4.13: no oom_kill counter; the limit was hit
            with contextlib.suppress(OSError, ValueError):
                return 1 if int(_read(self.dirs["memory"] / "memory.failcnt")) > 0 else 0
        return 0

    def memory_stats(self) -> dict[str, int]:
        """Peak and failure count, for details (v1: max_usage_in_bytes, failcnt)."""
        names = (
            {"peakBytes": "memory.peak"}
            if self.version == 2
            else {"peakBytes": "memory.max_usage_in_bytes", "failcnt": "memory.failcnt"}
        )
        d = self.dirs["unified" if self.version == 2 else "memory"]
        out = {}
        for key, fname in names.items():
            with contextlib.suppress(OSError, ValueError):
                out[key] = int(_read(d / fname).strip())
        return out

    # ---------------------------------------------------------------- ending
    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL everything in the cgroup, forks included; True once it is empty."""
        deadline = time.monotonic() + timeout
        while True:
            if self.version == 2:
                with contextlib.suppress(FileNotFoundError):
                    _write(self.dirs["unified"] / "cgroup.kill", "1")
            else:
                self._kill_v1_frozen()
            end = min(deadline, time.monotonic() + 0.5)
            while time.monotonic() < end:
                if not self.pids():
                    return True
                time.sleep(0.01)
            if time.monotonic() >= deadline:
                return not self.pids()

    def _kill_v1_frozen(self) -> None:
        """Freeze (nothing forks), SIGKILL every member, thaw (so the kills are delivered)."""
        freezer = self.dirs.get("freezer")
        frozen = False
        if freezer is not None and freezer.is_dir():
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "FROZEN")
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    if _read(freezer / "freezer.state").strip() == "FROZEN":
                        frozen = True
                        break
                    time.sleep(0.005)
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            if freezer is not None and (frozen or freezer.is_dir()):
                with contextlib.suppress(OSError):
                    _write(freezer / "freezer.state", "THAWED")

    def remove(self, timeout: float = 5.0) -> bool:
        """Remove the (empty) directories; True when none is left."""
        deadline = time.monotonic() + timeout
        left = False
        for d in self.dirs.values():
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        left = True
                        break
                    time.sleep(0.02)  # members still exiting
        return not left


def remove_parent_if_empty(parent: str) -> None:
    """Remove ``<controller root>/<own cgroup>/<parent>`` where nothing is left in it."""
    with contextlib.suppress(CgroupUnavailable, OSError):
        for d in Cgroup.plan(parent, "").dirs.values():
            with contextlib.suppress(OSError):
                d.rmdir()
