"""Reading ManagedService manifests (and the Secrets/ConfigMaps they reference) from files."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from steward.api.common import KeySelector
from steward.api.errors import format_validation_error
from steward.api.manifest import ManagedService

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class LoadResult:
    services: dict[str, tuple[ManagedService, str]] = field(default_factory=dict)
    """key -> (manifest, source file)."""
    objects: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    """(kind, namespace, name) -> decoded data of Secrets and ConfigMaps."""
    errors: list[str] = field(default_factory=list)
    files: dict[Path, float] = field(default_factory=dict)
    watched: dict[str, int] = field(default_factory=dict)
    """What :func:`changed` compares: see :func:`snapshot`."""


def discover(paths: list[Path]) -> list[Path]:
    """Files named on the command line, and manifest files inside named directories (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
            )
        else:
            out.append(p)
    return out


def snapshot(paths: list[Path], files: list[Path]) -> dict[str, int]:
    """The mtime (ns) of each manifest file, each named path, and each directory under a
    named one: an edit changes a file's, and a file added, removed or renamed into place
    (as editors save) changes its directory's, so comparing these is enough to know when
    to read the files again. -1: not there."""
    out: dict[str, int] = {str(f): _mtime(str(f)) for f in files}
    for p in paths:
        out[str(p)] = _mtime(str(p))
        if p.is_dir():
            for d, _, _ in os.walk(p):
                out[d] = _mtime(d)
    return out


def changed(watched: dict[str, int]) -> bool:
    """Whether any path of a :func:`snapshot` has another mtime now: one stat each, no
    directory listing, so watching a thousand manifests costs about a millisecond."""
    return any(_mtime(path) != ns for path, ns in watched.items())


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _secret_data(doc: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    data.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return data


def load(paths: list[Path]) -> LoadResult:
    """Parse every document; other kinds are ignored, bad ones reported with file and field."""
    result = LoadResult()
    found = discover(paths)
    result.watched = snapshot(paths, found)  # before reading: an edit during it is seen next
    for path in found:
        try:
            result.files[path] = path.stat().st_mtime
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            result.errors.append(f"{path}: cannot read: {exc}")
            continue
        for i, doc in enumerate(docs):
            where = f"{path}" + (f"[{i}]" if len(docs) > 1 else "")
            if not isinstance(doc, dict):
                result.errors.append(f"{where}: not a mapping")
                continue
            kind = doc.get("kind")
            meta = doc.get("metadata") or {}
            ns = meta.get("namespace", "default")
            if kind == "Secret":
                result.objects[("secret", ns, meta.get("name", ""))] = _secret_data(doc)
            elif kind == "ConfigMap":
                result.objects[("configMap", ns, meta.get("name", ""))] = {
                    k: str(v) for k, v in (doc.get("data") or {}).items()
                }
            elif kind == "ManagedService":
                try:
                    ms = ManagedService.model_validate(doc)
                except ValidationError as exc:
                    result.errors.append(format_validation_error(where, exc))
                    continue
                if ms.key in result.services:
                    result.errors.append(f"{where}: duplicate ManagedService {ms.key}")
                    continue
                result.services[ms.key] = (ms, where)
    return result


class FileResolver:
    """valueFrom against Secrets and ConfigMaps found in the same files."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, str]], namespace: str) -> None:
        self.objects = objects
        self.namespace = namespace

    def read(self, kind: str, name: str) -> dict[str, str] | None:
        return self.objects.get((kind, self.namespace, name))

    def __call__(self, kind: str, ref: KeySelector) -> str | None:
        return (self.read(kind, ref.name) or {}).get(ref.key)
