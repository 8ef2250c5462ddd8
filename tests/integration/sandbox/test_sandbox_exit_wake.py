"""A sandboxed daemon's end is watched like any other (a pidfd of the held spawn's pid)."""

from __future__ import annotations

import os
import signal
import time

from steward import ServiceState
from tests.support.sandbox import PY, Factory

SEEN_WITHIN = 1.0


def test_sandboxed_daemon_is_watched_through_the_held_spawn(daemon: Factory) -> None:
    """The sandbox's held /bin/sh execs the argv in place: same pid, same pidfd."""
    rt = daemon("watched", {"command": [PY, "-c", "import time; time.sleep(60)"]})
    rt.start()
    obs = rt.observe()
    assert obs.state is ServiceState.ACTIVE and obs.details.get("uid")
    watch = rt.exit_watch()
    assert watch is not None and watch.fileno() is not None
    os.kill(obs.details["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    while not watch.ended():
        assert time.monotonic() - t0 < SEEN_WITHIN
        time.sleep(0.001)
    watch.close()
    assert rt.observe().state is ServiceState.ERROR
    assert rt.exit_watch() is None
