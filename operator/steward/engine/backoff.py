"""Crash-loop back-off, as the kubelet does it: 10 s doubling to 300 s, reset after 10 min up."""

from __future__ import annotations

from steward.api.restart import BackoffSpec


def restart_delay(spec: BackoffSpec, crashes: int) -> float:
    """Delay before restart number ``crashes`` (1-based) of a crash loop."""
    if crashes <= 0:
        return 0.0
    delay = spec.initial_seconds * (2 ** min(crashes - 1, 32))
    return float(min(delay, spec.max_seconds))


def crashes_after_exit(spec: BackoffSpec, crashes: int, run_seconds: float | None) -> int:
    """The crash count after one more exit; a run that lasted long enough resets the loop."""
    if run_seconds is not None and run_seconds >= spec.reset_after_seconds:
        return 1
    return crashes + 1
