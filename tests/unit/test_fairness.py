"""Fair worker pools: the pure choices as tables, the FairPool with real threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future

import pytest

from steward.api.state import AdminState, ServiceState
from steward.engine.fairness import FairPool, Lane, default_cap, lane_for, pick

WAIT = 10.0


@pytest.mark.parametrize(
    ("workers", "cap"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (9, 4), (0, 1)]
)
def test_default_cap(workers: int, cap: int) -> None:
    assert default_cap(workers) == cap


@pytest.mark.parametrize(
    ("order", "running", "cap", "free", "chosen"),
    [
        ([], {}, 1, 4, None),
        (["a"], {}, 1, 1, "a"),
        (["a", "b"], {"a": 1}, 1, 1, "b"),
        (["a", "b"], {"a": 1, "b": 1}, 1, 1, None),  # both at their cap, one worker left
        (["a", "b"], {"a": 1, "b": 1}, 1, 2, "a"),  # two left: the first in turn borrows one
        (["b", "a"], {}, 2, 1, "b"),  # round-robin order, not name order
        (["a", "b"], {"a": 1}, 2, 1, "a"),
        (["a", "b", "c"], {"a": 2, "b": 3}, 2, 1, "c"),
        (["a"], {"a": 2}, 2, 1, None),  # a lone tenant never takes the last free worker
        (["a"], {"a": 2}, 2, 2, "a"),
        (["a", "b"], {"a": 3}, 2, 1, "b"),  # ... which the newcomer gets
    ],
)
def test_pick(
    order: list[str], running: dict[str, int], cap: int, free: int, chosen: str | None
) -> None:
    assert pick(order, running, cap, free) == chosen


ON, OFF = AdminState.ACTIVE, AdminState.INACTIVE


@pytest.mark.parametrize(
    ("admin", "state", "deleting", "lane"),
    [
        (ON, ServiceState.ACTIVE, False, Lane.RECONCILE),
        (ON, ServiceState.PENDING_STARTUP, False, Lane.RECONCILE),
        (ON, ServiceState.ERROR, False, Lane.RECONCILE),
        (ON, ServiceState.INACTIVE, False, Lane.RECONCILE),
        (OFF, ServiceState.ACTIVE, False, Lane.STOP),
        (OFF, ServiceState.PENDING_STARTUP, False, Lane.STOP),
        (OFF, ServiceState.PENDING_SHUTDOWN, False, Lane.STOP),
        (OFF, ServiceState.ERROR, False, Lane.STOP),  # a stop that failed is retried
        (OFF, ServiceState.INACTIVE, False, Lane.RECONCILE),  # stopped: a cheap observe
        (ON, ServiceState.ACTIVE, True, Lane.STOP),
        (OFF, ServiceState.INACTIVE, True, Lane.STOP),
    ],
)
def test_lane_for(admin: AdminState, state: ServiceState, deleting: bool, lane: Lane) -> None:
    assert lane_for(admin, state, deleting=deleting) is lane


# ---------------------------------------------------------------- FairPool, real threads
class Probe:
    """Blocking tasks that record when they run, how many run at once, and wait for a gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}

    def task(self, namespace: str, label: str) -> Callable[[], str]:
        gate = self.gates.setdefault(label, threading.Event())

        def run() -> str:
            with self.lock:
                self.started.append(label)
                self.now[namespace] = self.now.get(namespace, 0) + 1
                self.peak[namespace] = max(self.peak.get(namespace, 0), self.now[namespace])
            try:
                assert gate.wait(WAIT), f"{label} never released"
                return label
            finally:
                with self.lock:
                    self.now[namespace] -= 1

        return run

    def release(self, *labels: str) -> None:
        for label in labels:
            self.gates.setdefault(label, threading.Event()).set()

    def wait_started(self, *labels: str) -> None:
        deadline = time.monotonic() + WAIT
        while not set(labels) <= set(self.started):
            assert time.monotonic() < deadline, f"not started: {set(labels) - set(self.started)}"
            time.sleep(0.005)


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    yield p
    p.release(*list(p.gates))  # never leave a worker blocked


def settle() -> None:
    time.sleep(0.1)  # long enough for a wrongly scheduled task to start


def drained(pool: FairPool) -> bool:
    """Nothing running or queued, waiting up to WAIT: a worker resolves its future before it
    gives its slot back, so the count may lag the last result() by a moment."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        load = pool.load()
        if load.running == {} and load.queued == {}:
            return True
        time.sleep(0.01)
    return False


def test_a_namespace_over_its_cap_waits_and_another_gets_the_free_worker(probe: Probe) -> None:
    pool = FairPool(workers=4, cap=2, name="t")
    try:
        a = pool.for_namespace("a")
        futures = [a.submit(probe.task("a", f"a{i}")) for i in range(6)]
        probe.wait_started("a0", "a1", "a2")  # its cap, then borrowed: all but one worker
        settle()
        assert probe.started == ["a0", "a1", "a2"]
        assert pool.load().queued == {"a": 3}
        b = pool.for_namespace("b").submit(probe.task("b", "b0"))
        probe.wait_started("b0")  # the worker kept free went to b at once
        probe.release(*(f"a{i}" for i in range(6)), "b0")
        assert [f.result(WAIT) for f in futures] == [f"a{i}" for i in range(6)]
        assert b.result(WAIT) == "b0"
        assert probe.peak["a"] == 3
        assert drained(pool), pool.load()
    finally:
        pool.shutdown()


def test_fifo_within_a_namespace_and_round_robin_between(probe: Probe) -> None:
    pool = FairPool(workers=1, cap=1, name="t")
    try:
        gate = pool.for_namespace("z").submit(probe.task("z", "gate"))
        probe.wait_started("gate")
        a, b = pool.for_namespace("a"), pool.for_namespace("b")
        labels = ["a1", "a2", "a3", "b1", "b2"]
        futures = [
            (a if label[0] == "a" else b).submit(probe.task(label[0], label)) for label in labels
        ]
        probe.release("gate", *labels)
        gate.result(WAIT)
        for f in futures:
            f.result(WAIT)
        assert probe.started == ["gate", "a1", "b1", "a2", "b2", "a3"]
    finally:
        pool.shutdown()


def test_a_freed_worker_goes_to_the_namespace_under_its_cap(probe: Probe) -> None:
    pool = FairPool(workers=3, cap=1, name="t")
    try:
        for ns in ("a", "b", "c"):
            for i in range(3):
                pool.for_namespace(ns).submit(probe.task(ns, f"{ns}{i}"))
        # a came first and alone: its cap plus one borrowed; the last worker went to b
        probe.wait_started("a0", "a1", "b0")
        settle()
        assert sorted(probe.started) == ["a0", "a1", "b0"]
        probe.release("a0")
        probe.wait_started("c0")  # a's freed worker goes to c (under its cap), not to a2
        settle()
        assert sorted(probe.started) == ["a0", "a1", "b0", "c0"]
    finally:
        probe.release(*list(probe.gates))
        pool.shutdown()


def test_results_exceptions_and_cancelled_waiters(probe: Probe) -> None:
    pool = FairPool(workers=1, cap=1, name="t")
    try:
        ns = pool.for_namespace("a")
        blocker = ns.submit(probe.task("a", "blocker"))
        probe.wait_started("blocker")
        ran: list[str] = []
        dropped = ns.submit(ran.append, "dropped")
        assert dropped.cancel()  # still queued: cancellable, and it never runs
        failing = ns.submit(lambda: 1 / 0)
        after = ns.submit(lambda x, y=0: x + y, 1, y=2)
        probe.release("blocker")
        assert blocker.result(WAIT) == "blocker"
        with pytest.raises(ZeroDivisionError):
            failing.result(WAIT)
        assert after.result(WAIT) == 3
        assert ran == []
        assert drained(pool), pool.load()
    finally:
        pool.shutdown()


def test_asyncio_run_in_executor_and_cancelling_the_await(probe: Probe) -> None:
    pool = FairPool(workers=1, cap=1, name="t")
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ns = pool.for_namespace("a")
        blocker = loop.run_in_executor(ns, probe.task("a", "blocker"))
        await asyncio.to_thread(probe.wait_started, "blocker")
        queued = loop.run_in_executor(ns, ran.append, "queued")
        queued.cancel()  # what kopf does to a stopped daemon's pending step
        await asyncio.sleep(0.01)  # asyncio passes the cancel on to the Future at its next turn
        probe.release("blocker")
        assert await blocker == "blocker"
        assert await loop.run_in_executor(ns, lambda: "next") == "next"

    try:
        asyncio.run(main())
        assert ran == []
    finally:
        pool.shutdown()


def test_shutdown_cancels_what_waits(probe: Probe) -> None:
    pool = FairPool(workers=1, cap=1, name="t")
    ns = pool.for_namespace("a")
    running = ns.submit(probe.task("a", "running"))
    probe.wait_started("running")
    waiting: Future[str] = ns.submit(probe.task("a", "waiting"))
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        waiting.result(WAIT)
    with pytest.raises(RuntimeError):
        ns.submit(lambda: None)
    probe.release("running")
    assert running.result(WAIT) == "running"
    assert probe.started == ["running"]


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("env", "flags", "caps"),
    [
        ({}, {}, {"daemon": 4, "container": 4, "terraform": 1}),
        ({"STEWARD_TERRAFORM_WORKERS": "6"}, {}, {"daemon": 4, "container": 4, "terraform": 3}),
        (
            {"STEWARD_DAEMON_WORKERS_PER_NAMESPACE": "2"},
            {},
            {"daemon": 2, "container": 4, "terraform": 1},
        ),
        (
            {"STEWARD_DAEMON_WORKERS_PER_NAMESPACE": "2"},
            {"daemon": 3, "terraform": None},
            {"daemon": 3, "container": 4, "terraform": 1},
        ),  # a flag wins over the environment; an unset flag leaves it alone
    ],
)
def test_namespace_caps_from_env_and_flags(
    env: dict[str, str], flags: dict[str, int | None], caps: dict[str, int]
) -> None:
    from steward.k8s.config import OperatorConfig

    config = OperatorConfig.from_env(env, workers_per_namespace=flags)
    assert {f: config.namespace_cap(f) for f in caps} == caps


def test_the_cli_parses_the_per_namespace_flags() -> None:
    from steward.cli import build_parser

    args = build_parser().parse_args(
        ["run", "--terraform-workers", "4", "--terraform-workers-per-namespace", "3"]
    )
    assert (args.terraform_workers, args.terraform_workers_per_namespace) == (4, 3)
    assert args.daemon_workers_per_namespace is None
