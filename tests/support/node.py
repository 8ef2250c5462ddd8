"""What the node tests share: the session's single-node cluster and the operator image in it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hack.testenv import cluster


@dataclasses.dataclass
class NodeSession:
    cluster: cluster.NodeCluster
    info: cluster.NodeClusterInfo
    operator_image: str | None  # name in containerd
    operator_archive: Path | None
    operator_error: str
