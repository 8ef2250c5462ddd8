"""kopf handlers: translate events into Controller calls. No decisions here.

The configuration and the Controller travel in kopf's ``memo`` (set by
``steward run``), not in module globals or environment round trips.
"""

from __future__ import annotations

from typing import Any

import kopf

from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.k8s import metrics
from steward.k8s.clients import build_clients
from steward.k8s.config import OperatorConfig
from steward.k8s.controller import Controller
from steward.k8s.exposure import Exposer
from steward.k8s.login import login
from steward.k8s.serving import controller_for, resume, serve_logs
from steward.k8s.settings import apply_settings

RESOURCE = (API_GROUP, API_VERSION, PLURAL)


def controller(memo: kopf.Memo) -> Controller:
    ctl: Controller | None = getattr(memo, "controller", None)
    assert ctl is not None, "operator not started"
    return ctl


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = getattr(memo, "config", None) or OperatorConfig.from_env()
    apply_settings(settings, config)
    clients = build_clients(config.kubeconfig)
    ctl = controller_for(clients, config)
    memo.controller = ctl
    if config.node is None:  # `steward run`: one host owns the endpoints too (not an agent)
        memo.exposer = Exposer(clients, ctl.recorder)
        await memo.exposer.start(config.namespaces)
    await resume(ctl)
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.metrics_addr, ctl.states)
    if config.node is not None and config.log_port:
        memo.log_server = serve_logs(ctl, config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctl: Controller | None = getattr(memo, "controller", None)
    server = getattr(memo, "log_server", None)
    if server is not None:
        server.close()
    if ctl is not None:
        ctl.shutdown()


kopf.on.login()(login)  # the --kubeconfig given, not only $KUBECONFIG


@kopf.on.event(*RESOURCE)
async def changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    metrics.WATCH_EVENTS.inc()
    key = f"{body.meta.get('namespace')}/{body.meta['name']}"
    controller(memo).wake(key, gone=body if type == "DELETED" else None)
    exposer: Exposer | None = getattr(memo, "exposer", None)
    if exposer is not None:
        await exposer.observe(type, body)


def serves(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    """The daemon's filter: an agent drives only what is bound to its host (the live body)."""
    ctl: Controller | None = getattr(memo, "controller", None)
    return ctl is None or ctl.serves(body)


@kopf.daemon(*RESOURCE, cancellation_timeout=1.0, when=serves)
async def drive(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).drive(body, stopped)


@kopf.on.delete(*RESOURCE)
async def delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).delete(body, retry)
