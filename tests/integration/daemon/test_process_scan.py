"""The /proc scan that stops share (runtimes/process.py): never older than the call."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil

from steward.runtimes.process import _SCANS, process_tree, session_members


def test_a_shared_scan_sees_every_process_started_before_the_call() -> None:
    procs: list[subprocess.Popen[bytes]] = []
    seen: list[tuple[int, set[int]]] = []
    lock = threading.Lock()

    def worker() -> None:
        proc = subprocess.Popen(["sleep", "30"])  # exists before this thread asks
        with lock:
            procs.append(proc)
        pids = {pid for pid, _, _ in _SCANS.stats()}
        with lock:
            seen.append((proc.pid, pids))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(seen) == 16
        assert all(pid in pids for pid, pids in seen), [p for p, pids in seen if p not in pids]
    finally:
        for proc in procs:  # only what this test started, by PID
            proc.kill()
            proc.wait(timeout=10)


def test_tree_and_session_from_one_scan() -> None:
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 31 & wait"], start_new_session=True)
    try:
        root = psutil.Process(leader.pid)
        for _ in range(100):
            tree = process_tree(root)
            if len(tree) == 3:
                break
            time.sleep(0.05)
        assert {p.pid for p in tree} == {leader.pid, *(c.pid for c in root.children())}
        assert len(tree) == 3
        assert {p.pid for p in session_members(leader.pid)} == {c.pid for c in root.children()}
    finally:
        for p in process_tree(psutil.Process(leader.pid)):
            p.kill()
        leader.wait(timeout=10)
