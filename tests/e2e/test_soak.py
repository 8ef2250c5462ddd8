"""The soak (``pytest -m soak``): bench/scenarios/soak.py run on its own control plane.

1,000 services for 30 minutes with crashes and spec changes (``STEWARD_BENCH_SOAK_SERVICES``
/ ``_SECONDS`` shorten it); the operator's RSS must not grow by more than the scenario's
limit after warm-up, and every service must be Ready on its latest generation at the end.
The numbers land in the test's own directory, not in bench/results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO


@pytest.mark.soak
@pytest.mark.timeout(3 * 3600)
def test_operator_memory_does_not_grow_under_churn(control_plane: Any, tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {
        **os.environ,
        "STEWARD_TESTBIN": str(control_plane.bin_dir),
        "STEWARD_BENCH_RESULTS": str(results),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--only", "SOAK"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * 3600 - 60,
    )
    print(proc.stdout[-6000:], proc.stderr[-6000:])
    data = json.loads((results / "soak.json").read_text())
    assert proc.returncode == 0 and not data.get("error"), data.get("error")
    print("SOAK", json.dumps({k: v for k, v in data["data"].items() if k != "series"}))
    missed = [t for t in data["targets"] if t["met"] is False]
    assert not missed, missed
    assert data["data"]["kills"] > 0 and data["data"]["spec_changes"] > 0, data["data"]
