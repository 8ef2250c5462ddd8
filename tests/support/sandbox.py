"""What the sandbox tests share: the interpreter the sandbox uids may run, the runtime factory."""

from __future__ import annotations

from collections.abc import Callable

from steward.runtimes.daemon.runtime import DaemonRuntime

PY = "/usr/bin/python3"
"""An interpreter the sandbox uids may run (the venv's lives under /root, 0700)."""

Factory = Callable[..., DaemonRuntime]
"""``daemon(name, spec_dict, limits=..., **sandbox_fields)`` (the ``daemon`` fixture)."""
