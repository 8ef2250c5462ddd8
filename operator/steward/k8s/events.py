"""Kubernetes Events that speak once: identical Events aggregate, and each object is rate-limited.

client-go's recorder does two things kopf's ``kopf.event`` does not: an Event
with the same (object, type, reason, message) as an earlier one updates that
object's ``count`` and ``lastTimestamp`` instead of creating another, and a
token bucket per object (burst 25, one more every 5 minutes) keeps one broken
resource from flooding etcd. Here the Event's name is derived from those four
fields, so aggregation also holds across operator restarts: a create that
finds the name taken reads the stored count and continues it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes

from steward.api import reasons as R

log = logging.getLogger("steward.k8s.events")

COMPONENT = "steward"
BURST = 25
REFILL_SECONDS = 300.0
MAX_KEYS_PER_OBJECT = 64


@dataclass(frozen=True)
class ObjectRef:
    """The involvedObject of an Event."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        """Bookkeeping key: the uid, or namespace/name when the uid is unknown."""
        return self.uid or f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, str]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


@dataclass
class _Entry:
    name: str
    type: str
    reason: str
    message: str
    count: int = 0
    written: int = 0
    """Count as stored in the API (0: not created yet by this process)."""
    first: datetime = field(default_factory=lambda: datetime.now(UTC))
    last: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Bucket:
    tokens: float = BURST
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.stamp) / REFILL_SECONDS)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class _PerObject:
    bucket: _Bucket = field(default_factory=_Bucket)
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(ref: ObjectRef, type_: str, reason: str, message: str) -> str:
    """A stable name: the same Event for the same object is always the same API object."""
    digest = hashlib.sha256(f"{ref.uid}|{type_}|{reason}|{message}".encode()).hexdigest()[:16]
    return f"{ref.name[: 253 - 17]}.{digest}"


class EventRecorder:
    """Aggregating, rate-limited Events; the blocking API calls run in the caller's thread."""

    def __init__(self, core: kubernetes.client.CoreV1Api, instance: str = "") -> None:
        self.core = core
        self.instance = instance
        self._objects: dict[str, _PerObject] = {}
        self.created = 0
        self.updated = 0
        self.dropped = 0

    def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Count one occurrence and write it now if the object's bucket allows."""
        message = message[: R.MESSAGE_MAX]
        per = self._objects.setdefault(ref.key, _PerObject())
        name = event_name(ref, type_, reason, message)
        entry = per.entries.get(name)
        if entry is None:
            entry = _Entry(name, type_, reason, message)
            per.entries[name] = entry
            while len(per.entries) > MAX_KEYS_PER_OBJECT:
                per.entries.popitem(last=False)
        else:
            per.entries.move_to_end(name)
        entry.count += 1
        entry.last = datetime.now(UTC)
        if per.bucket.take():
            self._write(ref, entry)
        else:
            self.dropped += 1  # flushed later with the right count

    def flush(self, ref: ObjectRef) -> None:
        """Write counts that the rate limit held back, as tokens allow."""
        per = self._objects.get(ref.key)
        if per is None:
            return
        for entry in list(per.entries.values()):
            if entry.count != entry.written and per.bucket.take():
                self._write(ref, entry)

    def held_back(self, ref: ObjectRef) -> bool:
        """Some count of this object's Events is not written yet (the rate limit held it)."""
        per = self._objects.get(ref.key)
        return per is not None and any(e.count != e.written for e in per.entries.values())

    def forget(self, ref: ObjectRef) -> None:
        """The object is gone: drop its bookkeeping (its Events expire in the API)."""
        self._objects.pop(ref.key, None)

    # ------------------------------------------------------------ API
    def _write(self, ref: ObjectRef, entry: _Entry) -> None:
        try:
            if entry.written == 0:
                self._create_or_continue(ref, entry)
            else:
                self._patch(ref, entry, entry.count)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404 and entry.written:
                entry.written = 0  # expired (event-ttl): create it anew
                try:
                    self._create_or_continue(ref, entry)
                except kubernetes.client.ApiException as again:
                    log.warning("event %s not written: %s", entry.reason, again.status)
                return
            log.warning("event %s not written: %s %s", entry.reason, exc.status, exc.reason)
        except Exception as exc:  # an Event must never break a reconcile
            log.warning("event %s not written: %s", entry.reason, exc)

    def _create_or_continue(self, ref: ObjectRef, entry: _Entry) -> None:
        body = self._body(ref, entry, entry.count)
        try:
            self.core.create_namespaced_event(ref.namespace, body)  # type: ignore[arg-type]
            entry.written = entry.count
            self.created += 1
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            # Written by an earlier operator process: continue its count.
            stored = self.core.read_namespaced_event(entry.name, ref.namespace)
            base = int(getattr(stored, "count", 0) or 0)
            entry.count += base
            entry.written = base
            self._patch(ref, entry, entry.count)

    def _patch(self, ref: ObjectRef, entry: _Entry, count: int) -> None:
        self.core.patch_namespaced_event(
            entry.name,
            ref.namespace,
            {"count": count, "lastTimestamp": _ts(entry.last)},
        )
        entry.written = count
        self.updated += 1

    def _body(self, ref: ObjectRef, entry: _Entry, count: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": entry.name, "namespace": ref.namespace},
            "involvedObject": ref.to_dict(),
            "type": entry.type,
            "reason": entry.reason,
            "message": entry.message,
            "count": count,
            "firstTimestamp": _ts(entry.first),
            "lastTimestamp": _ts(entry.last),
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance or COMPONENT,
        }
