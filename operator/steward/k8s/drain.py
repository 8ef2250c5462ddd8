"""`steward cordon|uncordon|drain NODE`: an admin takes a live host out of service.

The decisions are :mod:`steward.engine.drain`'s; this module reads and writes them. Every
unbinding is a status merge patch preconditioned on the resourceVersion read, so a drain
racing the controller or an agent loses (409) and reads again instead of overwriting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

from steward.api import reasons as R
from steward.api.crd import NODE_NAME_FIELD, PLURAL
from steward.api.manifest import API_GROUP, API_VERSION
from steward.api.node import NODE_PLURAL
from steward.api.status import utcnow
from steward.engine import drain as D
from steward.engine.binding import placement_patch
from steward.k8s.events import EventRecorder, ObjectRef
from steward.k8s.serving import binding_of, placement_of

POLL = 0.5
CONFLICT_RETRIES = 5


class DrainFailed(Exception):
    """The drain could not finish: a pinned service, or a timeout (the message says which)."""


@dataclass
class Drainer:
    custom: Any
    core: Any
    say: Callable[[str], None] = print

    # ------------------------------------------------------------------ cordon
    def cordon(self, node: str, unschedulable: bool = True) -> None:
        """spec.unschedulable, as ``kubectl cordon`` writes it (404: no such host)."""
        current: Any = self.custom.get_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_PLURAL, node
        )
        word = "cordoned" if unschedulable else "uncordoned"
        if bool((current.get("spec") or {}).get("unschedulable")) == unschedulable:
            self.say(f"stewardnode/{node} already {word}")
            return
        self.custom.patch_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_PLURAL, node, {"spec": {"unschedulable": unschedulable}}
        )
        self.say(f"stewardnode/{node} {word}")

    # ------------------------------------------------------------------ drain
    def _on_host(self, node: str) -> list[dict[str, Any]]:
        found: Any = self.custom.list_cluster_custom_object(
            API_GROUP, API_VERSION, PLURAL, field_selector=f"{NODE_NAME_FIELD}={node}"
        )
        return list(found.get("items") or [])

    def _get(self, key: str) -> dict[str, Any] | None:
        namespace, name = key.split("/", 1)
        try:
            obj: Any = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)

    @staticmethod
    def _view(obj: dict[str, Any]) -> D.OnHost:
        meta = obj["metadata"]
        placement = placement_of(obj.get("spec") or {})
        return D.OnHost(
            key=f"{meta['namespace']}/{meta['name']}",
            binding=binding_of(obj),
            pinned=placement is not None and placement.node_name is not None,
            deleting=bool(meta.get("deletionTimestamp")),
        )

    def _unbind(self, node: str, obj: dict[str, Any]) -> int | None:
        """Write the unbinding of one service; the epoch written, or None when it is no
        longer the drain's (moved, pinned or deleted meanwhile)."""
        for _ in range(CONFLICT_RETRIES):
            step = D.plan(node, [self._view(obj)], utcnow())
            new = next(iter(step.move.values()), None)
            if new is None:
                return None
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            body = {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": {"placement": placement_patch(new)},
            }
            try:
                self.custom.patch_namespaced_custom_object_status(
                    API_GROUP, API_VERSION, namespace, PLURAL, name, body
                )
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise
                fresh = self._get(f"{namespace}/{name}")
                if fresh is None:
                    return None
                obj = fresh
                continue
            self._event(obj, f"Drained off {node} (epoch {new.epoch}): the host's agent stops it")
            return new.epoch
        raise DrainFailed(f"{obj['metadata']['name']}: the object kept changing; drain again")

    def _event(self, obj: dict[str, Any], message: str) -> None:
        meta = obj["metadata"]
        ref = ObjectRef(
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind="ManagedService",
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta.get("uid") or ""),
        )
        recorder = EventRecorder(self.core, "steward-drain")
        recorder.record(ref, "Normal", R.DRAINED, message)
        recorder.flush(ref)

    def drain(
        self, node: str, *, ignore_pinned: bool = False, timeout: float = 0.0, wait: bool = True
    ) -> None:
        """Cordon ``node`` and move what may move; wait until every moved service left it
        (``timeout`` 0: no limit, like kubectl's). Pinned services fail the drain unless
        ``ignore_pinned``: they are named and left running either way."""
        self.cordon(node)
        objs = {self._view(o).key: o for o in self._on_host(node)}
        step = D.plan(node, (self._view(o) for o in objs.values()), utcnow())
        if step.pinned:
            names = ", ".join(step.pinned)
            if not ignore_pinned:
                raise DrainFailed(
                    f"cannot move services pinned to {node} by spec.placement.nodeName: "
                    f"{names} (--ignore-pinned to drain the rest and leave them running)"
                )
            self.say(f"warning: ignoring services pinned to {node}: {names}")
        written: dict[str, int] = {}
        for key in step.move:
            epoch = self._unbind(node, objs[key])
            if epoch is not None:
                written[key] = epoch
                self.say(f"moving managedservice {key}")
        if wait:
            self._wait(node, written, timeout)
        self.say(f"stewardnode/{node} drained")

    def _wait(self, node: str, written: dict[str, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout if timeout > 0 else None
        pending = dict(written)
        while pending:
            for key, epoch in list(pending.items()):
                obj = self._get(key)
                binding = binding_of(obj) if obj is not None else None
                if obj is None or D.left_host(node, epoch, binding):
                    del pending[key]
                    where = binding.node_name if binding is not None else None
                    self.say(f"managedservice {key} left {node}" + _where(obj, where))
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise DrainFailed(
                    f"timed out waiting for {node}'s agent to stop {', '.join(sorted(pending))} "
                    "(status.placement.releasedEpoch); is the host Ready? A lost host's "
                    "services move by their failover policy, or with steward failover"
                )
            time.sleep(POLL)


def _where(obj: dict[str, Any] | None, node: str | None) -> str:
    if obj is None:
        return " (deleted)"
    return f" (now on {node})" if node else " (stopped there; waiting for a host)"
