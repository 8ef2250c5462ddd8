"""Who may reach what on disk: a service reaches its own directory, nothing beside it.

::

    state_root/            root 0711   traverse only: no listing, 0600 files stay private
      services/ ns/        root 0711
        <name>/            root:<gid> 0710   only this service's group may pass
          runtime/         root:<gid> 0710   the operator's files for it (pid file, log), 0600
            home/          <uid>:<gid> 0700  the service's own: HOME, default cwd

The operator's bookkeeping stays root-owned in a directory the service cannot
write, so it cannot forge the pid file the operator signals as root.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from steward.api import reasons as R
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.sandbox.model import Sandbox

HOME = "home"


def write_private(path: Path, text: str, owner: Sandbox | None = None) -> None:
    """Replace ``path`` atomically with a new file of mode 0600 (``owner``'s, when given,
    before it appears: readable by that service from its first moment)."""
    # One temporary file per writer: two threads recording the same exit must not take
    # each other's file away between write and rename.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _restrict(path: Path, mode: int, gid: int | None = None) -> None:
    os.chown(path, 0 if os.geteuid() == 0 else -1, -1 if gid is None else gid)
    os.chmod(path, mode)


def prepare(runtime_dir: Path, sandbox: Sandbox) -> Path:
    """Lay out and restrict the service's directories; returns its home (0700, its own)."""
    runtime_dir = runtime_dir.absolute()
    root = sandbox.state_root.absolute() if sandbox.state_root else None
    if root is not None and (runtime_dir == root or root not in runtime_dir.parents):
        raise RuntimeFailure(
            f"runtime dir {runtime_dir} is not a directory of its own below {root} "
            "(a singleton service cannot be sandboxed)",
            reason=R.SANDBOX_UNAVAILABLE,
        )
    try:
        home = runtime_dir / HOME
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, sandbox.uid, sandbox.gid)
        os.chmod(home, 0o700)
        _restrict(runtime_dir, 0o710, sandbox.gid)
        service_dir = runtime_dir.parent
        if root is not None and service_dir != root:
            _restrict(service_dir, 0o710, sandbox.gid)
            p = service_dir.parent
            while True:
                os.chmod(p, os.stat(p).st_mode & 0o700 | 0o011)  # noqa: S103 - traverse, no listing
                if p == root:
                    break
                p = p.parent
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot prepare the sandbox directories of {runtime_dir}: {exc.strerror or exc}",
            reason=R.SANDBOX_UNAVAILABLE,
        ) from None
    return home


def give(paths: list[Path], sandbox: Sandbox) -> None:
    """Hand whole trees to the service's uid (what its processes must write), mode g/o none."""
    for top in paths:
        if not top.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [*dirnames, *filenames, ""]:
                p = Path(dirpath) / name if name else Path(dirpath)
                if p.is_symlink():
                    continue
                os.chown(p, sandbox.uid, sandbox.gid)
                os.chmod(p, os.stat(p).st_mode & 0o700)
