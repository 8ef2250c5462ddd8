"""kopf handlers: translate events into Controller calls. No decisions here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf

from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.k8s import metrics
from steward.k8s.clients import build_clients
from steward.k8s.controller import Controller, Options
from steward.k8s.settings import apply_settings
from steward.k8s.terraform import install_vars_from

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
_controller: Controller | None = None


def controller() -> Controller:
    assert _controller is not None, "operator not started"
    return _controller


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _controller
    apply_settings(settings)
    state_dir = Path(os.environ.get("STEWARD_STATE_DIR") or Path.home() / ".local/state/steward")
    workers = {
        "daemon": int(os.environ.get("STEWARD_DAEMON_WORKERS", "8")),
        "container": int(os.environ.get("STEWARD_CONTAINER_WORKERS", "8")),
        "terraform": int(os.environ.get("STEWARD_TERRAFORM_WORKERS", "2")),
    }
    _controller = Controller(
        build_clients(os.environ.get("KUBECONFIG") or None),
        Options(state_dir=state_dir, workers=workers),
    )
    install_vars_from(_controller.clients)
    port = int(os.environ.get("STEWARD_METRICS_PORT") or 0)
    if port:
        metrics.serve(port, os.environ.get("STEWARD_METRICS_ADDR", "0.0.0.0"), _controller.states)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _controller is not None:
        _controller.shutdown()


@kopf.on.event(*RESOURCE)
async def changed(body: kopf.Body, **_: Any) -> None:
    controller().wake(f"{body.meta.get('namespace')}/{body.meta['name']}")


@kopf.daemon(*RESOURCE, cancellation_timeout=1.0)
async def drive(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await controller().drive(body, stopped)


@kopf.on.delete(*RESOURCE)
async def delete(body: kopf.Body, retry: int, **_: Any) -> None:
    await controller().delete(body, retry)
