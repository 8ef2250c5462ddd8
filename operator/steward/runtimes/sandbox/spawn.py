"""Start a child held before exec until it is inside its cgroup, then let it go.

Popen sets the uid, gid, groups and umask; a preexec_fn would run after the
uid switch (too late to join a root-owned cgroup) and is unsafe in a threaded
operator. So the child is ``/bin/sh`` waiting for one line on its stdin; the
operator moves it into the cgroup and writes the line; the shell replaces itself
with the real argv (``exec "$@"``: no shell parsing of the argv, the pid, session
and start time stay the same). If the operator dies first the child gets EOF and
exits 111 without running anything.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOLD = 'read -r _ || exit 111; exec </dev/null; exec "$@"'
FORGET_SHELL_DIRS = "unset PWD OLDPWD; "
"""The shell exports PWD; the child gets only the environment it was given."""
HELD_EXIT = 111


def held_popen(
    argv: list[str],
    release: Callable[[int], None],
    *,
    cwd: Path,
    env: dict[str, str],
    uid: int | None,
    gid: int | None,
    umask: int = 0o077,
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Popen ``argv`` held; ``release(pid)`` runs before it execs (raise to abort: killed)."""
    r, w = os.pipe()
    try:
        ids: dict[str, Any] = {}
        if uid is not None:
            ids = {"user": uid, "group": gid, "extra_groups": []}
        proc = subprocess.Popen(
            ["/bin/sh", "-c", ("" if "PWD" in env else FORGET_SHELL_DIRS) + HOLD, argv[0], *argv],
            cwd=cwd,
            env=env,
            stdin=r,
            umask=umask,
            **ids,
            **kwargs,
        )
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    try:
        release(proc.pid)
        os.write(w, b"go\n")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        raise
    finally:
        os.close(w)
    return proc
