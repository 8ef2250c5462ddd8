"""Where a service's manifest, status and engine bookkeeping live on disk.

The only code that knows the layout::

    <state_dir>/services/<namespace>/<name>/{manifest,status,engine}.json
    <state_dir>/services/<namespace>/<name>/runtime/   (the runtime's own files)
    <state_dir>/ports/                                 (port reservations)

Files are replaced atomically (write a temporary file, rename), so a crash
never leaves half a status for `steward status` or the next process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.api.status import ManagedServiceStatus
from steward.engine.state import EngineState
from steward.runtimes.base import ServiceIdentity
from steward.runtimes.sandbox.fs import write_private

MANIFEST = "manifest.json"
STATUS = "status.json"
ENGINE = "engine.json"


def default_state_dir() -> Path:
    """$STEWARD_STATE_DIR, else ~/.local/state/steward."""
    env = os.environ.get("STEWARD_STATE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "steward"


@dataclass(frozen=True)
class Stored:
    """One service as persisted: its manifest (without status) and status, as JSON dicts."""

    manifest: dict[str, Any]
    status: dict[str, Any]


class ServiceStore:
    """Load, save, forget and list the services persisted under one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._written: dict[Path, bytes] = {}
        """Digest of what this store last wrote to each file: an unchanged one is not rewritten
        (a launch saves several times, mostly the same engine and manifest)."""

    def service_dir(self, identity: ServiceIdentity) -> Path:
        return self.state_dir / "services" / identity.namespace / identity.name

    def runtime_dir(self, identity: ServiceIdentity) -> Path:
        return self.service_dir(identity) / "runtime"

    @property
    def ports_dir(self) -> Path:
        return self.state_dir / "ports"

    @property
    def log_hub_dir(self) -> Path:
        return self.state_dir / "loghub"

    def load_status(self, identity: ServiceIdentity) -> ManagedServiceStatus | None:
        try:
            text = (self.service_dir(identity) / STATUS).read_text()
            return ManagedServiceStatus.model_validate_json(text)
        except (OSError, ValueError):
            return None

    def load_engine(self, identity: ServiceIdentity) -> EngineState:
        try:
            return EngineState.from_json((self.service_dir(identity) / ENGINE).read_text())
        except OSError:
            return EngineState()

    def load_manifest(self, identity: ServiceIdentity) -> dict[str, Any] | None:
        try:
            data = json.loads((self.service_dir(identity) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(
        self,
        identity: ServiceIdentity,
        manifest: dict[str, Any],
        status: ManagedServiceStatus,
        engine: EngineState,
    ) -> None:
        """Persist all three atomically (each file on its own); what is unchanged since this
        store wrote it is left alone."""
        d = self.service_dir(identity)
        made = False
        for name, text in (
            (STATUS, status.model_dump_json(by_alias=True, exclude_none=True)),
            (ENGINE, engine.to_json()),
            (MANIFEST, json.dumps(manifest)),
        ):
            path = d / name
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if self._written.get(path) == digest:
                continue
            if not made:
                d.mkdir(parents=True, exist_ok=True)
                made = True
            write_private(path, text)
            self._written[path] = digest

    def forget(self, identity: ServiceIdentity, remove_runtime: bool) -> None:
        """Drop what is known of the service; with ``remove_runtime`` its runtime files too."""
        d = self.service_dir(identity)
        for name in (STATUS, ENGINE, MANIFEST):
            (d / name).unlink(missing_ok=True)
            self._written.pop(d / name, None)
        if remove_runtime:
            shutil.rmtree(d, ignore_errors=True)

    def list(self) -> Iterator[Stored]:
        """Every persisted service, sorted by namespace and name."""
        for status_file in sorted((self.state_dir / "services").glob(f"*/*/{STATUS}")):
            try:
                manifest = json.loads((status_file.parent / MANIFEST).read_text())
                status = json.loads(status_file.read_text())
            except (OSError, ValueError):
                continue
            yield Stored(manifest, status)
