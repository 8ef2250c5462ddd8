"""Two tenant namespaces served by one real operator, as the attack suites set them up."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.kubectl import Runner, delete_all_msvc
from tests.support.operator import Operator


@contextlib.contextmanager
def tenant_operator(
    control_plane: Any,
    kubectl: Runner,
    namespaces: tuple[str, str],
    log: Path,
    args: tuple[str, ...] = (),
    env: tuple[tuple[str, str], ...] = (),
) -> Iterator[tuple[Operator, Path]]:
    """`steward run` serving both namespaces (``args`` e.g. ``--sandbox``); yields it and its
    state directory. That directory lies under /tmp: its parents must be traversable by the
    sandbox uids (pytest's tmp root is 0700 root), as /var/lib/steward is in a real install.
    Afterwards: what both namespaces and the operator said, every ManagedService deleted
    (its finalizer needs the operator), the operator stopped, the state removed."""
    a, b = namespaces
    state = Path(tempfile.mkdtemp(prefix="steward-e2e-tenants-", dir="/tmp"))
    op = Operator(control_plane, a, state, log, extra_args=("-n", b, *args), extra_env=env)
    op.start()
    try:
        yield op, state
    finally:
        for ns in namespaces:
            print(kubectl("get", "msvc", "-n", ns, "-o", "yaml", check=False).stdout[-3000:])
        print(op.logs()[-3000:])
        for service_log in state.glob("services/*/*/runtime/*.log"):
            print(service_log, service_log.read_text(errors="replace")[-2000:])
        for ns in namespaces:
            delete_all_msvc(kubectl, ns, timeout=120)
        op.stop()
        shutil.rmtree(state, ignore_errors=True)
