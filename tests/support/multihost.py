"""What the multi-host lab's ``netlab_cluster`` fixture (tests/e2e/multihost/conftest.py)
yields: the lab's network namespaces and the control plane whose apiserver listens on the
lab's bridge."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hack.testenv import controlplane

from tests.support.kubectl import Runner
from tests.support.netns import NetLab

__all__ = ["MultiHost"]


@dataclass(frozen=True)
class MultiHost:
    """What ``netlab_cluster`` yields."""

    lab: NetLab
    control_plane: controlplane.ControlPlaneInfo
    kubectl: Runner
    """kubectl as cluster admin, from the root namespace."""

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig, pointing at the bridge address: usable in every host."""
        return self.control_plane.kubeconfig

    @property
    def server(self) -> str:
        return self.control_plane.server

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(self.lab.hosts)
