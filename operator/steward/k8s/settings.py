"""kopf settings: bookkeeping under steward.dev annotations, never in status; watch timeouts."""

from __future__ import annotations

import random

import kopf

from steward.api.crd import NODE_NAME_FIELD, PLURAL
from steward.api.manifest import API_GROUP
from steward.k8s.config import OperatorConfig

PREFIX = "steward.dev"


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no diff-base: Steward has no on.create/update handlers (the ServiceLoop compares
    generations itself), so kopf's ``last-handled-configuration`` annotation was one PATCH
    per new object that nothing read. kopf still builds the essence it compares."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def apply_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.reporting_component = "steward"
    settings.posting.reporting_instance = config.instance
    # A watch that silently stalls is cut by the server (server_timeout) or,
    # failing that, by the client; then it reconnects and relists.
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_client_timeout
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Ride out an API server or etcd outage of several minutes instead of giving up.
    settings.networking.error_backoffs = (1, 1, 2, 3, 5, 8, 13, 21, *([30] * 12))
    settings.background.cancellation_polling = 1
    # Serve exactly the namespaces named with -n (or the whole cluster) without
    # cluster-wide list/watch of namespaces and CRDs, so a Role per watched
    # namespace is all the RBAC the operator needs (charts/steward).
    settings.scanning.disabled = True
    if config.node:  # an agent: the API server sends only what is bound to this host
        selector = f"{NODE_NAME_FIELD}={config.node}"
        settings.watching.field_selectors[API_GROUP, PLURAL] = selector
    # Peering (--peering): kopf pauses every peer sharing the top priority, so
    # replicas of one Deployment each need their own ("random", the chart's default).
    priority = config.peering_priority
    if priority:
        settings.peering.priority = (
            random.randint(1, 2**31 - 1) if priority == "random" else int(priority)
        )
