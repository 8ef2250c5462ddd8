"""Two tenant namespaces served by one real operator, as the attack suites set them up."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.kubectl import Runner, delete_all_msvc
from tests.support.namespaces import scratch_namespace
from tests.support.operator import Operator
from tests.support.processes import TEST_UID_SIZE, TEST_UID_START

# In the operator's environment (STEWARD_E2E_CANARY): no tenant may ever see it.
CANARY = "steward-operator-canary-4f1d"


class Tenants(NamedTuple):
    a: str  # the test's own namespace
    b: str  # the second tenant's
    operator: Operator
    state: Path  # the operator's state directory


@contextlib.contextmanager
def sandboxed_tenants(
    control_plane: Any, kubectl: Runner, namespace: str, log: Path
) -> Iterator[Tenants]:
    """A second tenant namespace beside ``namespace`` and `steward run --sandbox` serving
    both, with CANARY in its environment; yields both namespaces, the operator and its state
    directory. Sandbox uids come from the range the suite's leak check watches. The state
    directory lies under /tmp: its parents must be traversable by the sandbox uids (pytest's
    tmp root is 0700 root), as /var/lib/steward is in a real install. Afterwards: what both
    namespaces and the operator said, every ManagedService deleted (its finalizer needs the
    operator), the operator stopped, the state and the second namespace removed."""
    with scratch_namespace(kubectl, f"{namespace[:40]}-b") as b:
        state = Path(tempfile.mkdtemp(prefix="steward-e2e-tenants-", dir="/tmp"))
        uids = ("STEWARD_SANDBOX_UIDS", f"{TEST_UID_START}-{TEST_UID_SIZE}")
        op = Operator(
            control_plane,
            namespace,
            state,
            log,
            extra_args=("-n", b, "--sandbox"),
            extra_env=(uids, ("STEWARD_E2E_CANARY", CANARY)),
        )
        op.start()
        try:
            yield Tenants(namespace, b, op, state)
        finally:
            for ns in (namespace, b):
                print(kubectl("get", "msvc", "-n", ns, "-o", "yaml", check=False).stdout[-3000:])
            print(op.logs()[-3000:])
            for service_log in state.glob("services/*/*/runtime/*.log"):
                print(service_log, service_log.read_text(errors="replace")[-2000:])
            for ns in (namespace, b):
                delete_all_msvc(kubectl, ns, timeout=120)
            op.stop()
            shutil.rmtree(state, ignore_errors=True)
