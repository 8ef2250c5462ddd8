"""Shared benchmark harness: control plane, operator process, Docker, watches, timing, reports."""
