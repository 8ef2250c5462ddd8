"""Where things are in the repository."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CRDS = REPO / "crds"
MS_CRD_FILE = CRDS / "managedservices.steward.dev.yaml"
NODE_CRD_FILE = CRDS / "stewardnodes.steward.dev.yaml"
POLICY_CRD_FILE = CRDS / "stewardpolicies.steward.dev.yaml"
CHART = REPO / "charts" / "steward"
TESTENV_DIR = REPO / "hack" / "testenv"
