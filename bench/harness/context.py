"""What every scenario gets: the control plane, API, kubectl, a work dir, the reaper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import docker
from bench.harness.audit import AuditLog
from bench.harness.cleanup import Reaper
from bench.harness.cluster import Api, ControlPlaneInfo, Kubectl
from bench.harness.listener import listener_argv
from bench.harness.operator import KopfFloor, Operator
from bench.harness.watch import Watcher


@dataclass
class Bench:
    reaper: Reaper
    info: ControlPlaneInfo
    api: Api
    kubectl: Kubectl
    work_dir: Path
    quick: bool
    selected: list[str] = field(default_factory=list)
    """The scenarios of this run (a scenario may leave something for a later one)."""
    shared: dict[str, Any] = field(default_factory=dict)
    """Hand-over between scenarios (P2's 1,000 Ready services become P3's fleet)."""
    audit: AuditLog | None = None
    """The control plane's audit log of LISTs and WATCHes (who made them)."""
    profile_dir: Path | None = None
    """With --profile: py-spy samples every operator into this directory."""
    _listener: list[str] | None = None
    _image: str | None = None

    def listener(self) -> list[str]:
        if self._listener is None:
            self._listener = listener_argv()
        return self._listener

    def busybox(self) -> str:
        if self._image is None:
            docker.ensure_engine(self.reaper)
            self._image = docker.busybox_image()
        return self._image

    def namespace(self, suffix: str) -> str:
        name = self.reaper.namespace(suffix)
        self.api.create_namespace(name)
        return name

    def watch(self, namespace: str) -> Watcher:
        w = Watcher(self.api, namespace).start()
        self.reaper.on_close(f"watch {namespace}", w.stop)
        return w

    def operator(
        self, suffix: str, extra_args: list[str] | None = None, floor: bool = False
    ) -> tuple[Operator, Watcher, float]:
        """A fresh namespace, a watch on it, an operator (or the kopf floor) that is watching.

        Returns the operator, the watcher and the operator's start-up seconds
        (process start until its watch delivered the canary's status).
        """
        ns = self.namespace(suffix)
        watcher = self.watch(ns)
        kind = KopfFloor if floor else Operator
        op = kind(self.info, self.reaper, ns, self.work_dir, suffix, extra_args, self.profile_dir)
        t0 = time.monotonic()
        op.start()
        op.wait_watching(self.api, watcher)
        return op, watcher, time.monotonic() - t0
