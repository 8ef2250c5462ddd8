"""A service's Terraform working area inside its runtime directory, and Steward's record of it.

::

    runtime_dir/
      module/                  the module copy + generated files (Terraform's cwd)
      tfdata/                  TF_DATA_DIR: backend config, providers, modules
      tfstate/                 state of the local backend
      terraform.log            every command's output
      terraform.json           Steward's record (init counter, last apply, drift)
      holder.json              the run in flight (left behind if it died)
      run.lock                 flock: one Steward process runs commands at a time

The module is re-copied only when its content checksum changes, and
``init`` runs only when that checksum, the backend or the binary changes:
the record remembers the key of the last successful init.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from steward.api.terraform import TerraformModule
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.sandbox.fs import write_private
from steward.runtimes.terraform.diag import Reason

BACKEND_FILE = "zz_steward_backend_override.tf.json"
"""An override file, last in lexical order, so it replaces any backend block of the module."""
VARS_FILE = "steward.auto.tfvars.json"
IGNORED_DIRS = frozenset({".terraform", ".git", ".hg", "__pycache__"})
IGNORED_SUFFIXES = (".tfstate", ".tfstate.backup", ".tfstate.lock.info")
MAX_MODULE_FILES = 5000
MAX_MODULE_BYTES = 64 * 1024 * 1024


class ApplyRecord(BaseModel):
    """The last apply: enough to report status, adopt and check drift without running Terraform."""

    ok: bool
    spec_hash: str = ""
    started_at: str = ""
    finished_at: str = ""
    finished_epoch: float = 0.0
    seconds: float = 0.0
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    """Non-sensitive outputs only."""
    sensitive_outputs: list[str] = Field(default_factory=list)
    """Names only: sensitive values never touch this file."""
    endpoint_uri: str | None = None


class DriftRecord(BaseModel):
    """The last drift check."""

    checked_at: str = ""
    checked_epoch: float = 0.0
    status: str = "unknown"
    """none, detected, corrected, error or unknown."""
    message: str = ""
    reason: str = ""
    corrections: int = 0


class Record(BaseModel):
    """Steward's memory of a service's Terraform (``terraform.json``)."""

    init_count: int = 0
    init_key: str = ""
    module_checksum: str = ""
    backend_hash: str = ""
    binary: dict[str, str] = Field(default_factory=dict)
    applied: bool = False
    """An apply started since the last destroy: resources may exist."""
    stopped: bool = False
    last_apply: ApplyRecord | None = None
    drift: DriftRecord = Field(default_factory=DriftRecord)
    stuck_lock: dict[str, Any] | None = None
    """A state lock Steward could not prove stale: shown in status until a run gets through."""
    dead_holder: dict[str, Any] | None = None
    """A run that died holding the lock; evidence for breaking that lock later."""


class Workspace:
    """Paths and files of one service's Terraform."""

    def __init__(self, runtime_dir: Path) -> None:
        self.root = runtime_dir
        self.module_dir = runtime_dir / "module"
        self.data_dir = runtime_dir / "tfdata"
        self.state_dir = runtime_dir / "tfstate"
        self.log_path = runtime_dir / "terraform.log"
        self.record_path = runtime_dir / "terraform.json"
        self.holder_path = runtime_dir / "holder.json"
        self.lock_path = runtime_dir / "run.lock"
        self._seen: tuple[int, int, int] | None = None
        """(inode, size, mtime) of the record as last loaded or saved here."""

    # ------------------------------------------------------------ record
    def load(self) -> Record:
        try:
            self._seen = _stamp(self.record_path)  # before the read: a later write shows
            return Record.model_validate_json(self.record_path.read_text())
        except OSError:
            self._seen = None
            return Record()
        except ValueError:
            return Record()

    def changed(self) -> bool:
        """The record file is not the one this workspace last loaded or saved: one stat, where
        a load is a read and a validation (observe asks at every reconcile)."""
        try:
            return _stamp(self.record_path) != self._seen
        except OSError:
            return self._seen is not None

    def save(self, record: Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_private(self.record_path, record.model_dump_json(indent=1))
        self._seen = _stamp(self.record_path)

    # ------------------------------------------------------------ module
    def module_files(self, module: TerraformModule) -> dict[str, bytes]:
        """Relative path -> content of the module source; RuntimeFailure when it is missing."""
        if module.inline is not None:
            return {name: content.encode() for name, content in module.inline.items()}
        assert module.path is not None
        src = Path(module.path).expanduser()
        if not src.is_dir():
            raise RuntimeFailure(
                f"module.path {module.path} is not a directory"
                + ("" if src.exists() else " (it does not exist)"),
                reason=Reason.MODULE_NOT_FOUND,
            )
        files: dict[str, bytes] = {}
        total = 0
        for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
            for name in sorted(filenames):
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                full = Path(dirpath) / name
                if not full.is_file():
                    continue
                data = full.read_bytes()
                total += len(data)
                files[full.relative_to(src).as_posix()] = data
                if len(files) > MAX_MODULE_FILES or total > MAX_MODULE_BYTES:
                    raise RuntimeFailure(
                        f"module.path {module.path} holds more than {MAX_MODULE_FILES} files "
                        f"or {MAX_MODULE_BYTES // 2**20} MiB; point it at the module itself",
                        reason=Reason.MODULE_NOT_FOUND,
                    )
        if not any(n.endswith((".tf", ".tf.json")) and "/" not in n for n in files):
            raise RuntimeFailure(
                f"module.path {module.path} has no .tf or .tf.json file",
                reason=Reason.MODULE_NOT_FOUND,
            )
        _check_json(files)
        return files

    def materialize(self, files: dict[str, bytes], checksum: str, known: str) -> bool:
        """Make ``module/`` hold exactly ``files``; True when it had to be rewritten."""
        if checksum == known and self.module_dir.is_dir():
            return False
        staging = self.root / "module.new"
        shutil.rmtree(staging, ignore_errors=True)
        for rel, data in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        lockfile = self.module_dir / ".terraform.lock.hcl"
        if lockfile.exists() and ".terraform.lock.hcl" not in files:
            shutil.copy2(lockfile, staging / ".terraform.lock.hcl")
        old = self.root / "module.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.module_dir.exists():
            self.module_dir.replace(old)
        staging.replace(self.module_dir)
        shutil.rmtree(old, ignore_errors=True)
        return True

    def write_generated(self, backend: dict[str, Any], tfvars: dict[str, Any]) -> None:
        """The backend override and the variables file, rewritten only when they differ."""
        _write_if_changed(self.module_dir / BACKEND_FILE, _dumps(backend))
        _write_if_changed(self.module_dir / VARS_FILE, _dumps(tfvars))

    # ------------------------------------------------------------ run lock
    def try_lock(self) -> int | None:
        """An exclusive flock on run.lock (dies with the process), or None when held elsewhere."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _stamp(path: Path) -> tuple[int, int, int]:
    """Which version of a file: every save replaces it (a new inode), so this is exact."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def checksum(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()[:16]


def digest(value: Any) -> str:
    return hashlib.sha256(_dumps(value).encode()).hexdigest()[:16]


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    write_private(path, text)


def _check_json(files: dict[str, bytes]) -> None:
    """A broken .tf.json is a syntax error; say so before Terraform gives a vaguer one."""
    for rel, data in files.items():
        if rel.endswith(".json"):
            try:
                json.loads(data)
            except ValueError as exc:
                raise RuntimeFailure(
                    f"module file {rel} is not valid JSON: {exc}", reason=Reason.SYNTAX_ERROR
                ) from None
