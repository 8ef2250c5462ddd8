"""The daemon flavor: a local process in its own session (ZenML's LocalDaemonService)."""

from steward.runtimes.daemon.runtime import DaemonRuntime

__all__ = ["DaemonRuntime"]
