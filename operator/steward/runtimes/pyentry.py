"""Alias of ``steward.pyentry`` (prefer that: it starts without importing pydantic)."""

from __future__ import annotations

import sys

from steward.pyentry import load_callable, main

__all__ = ["load_callable", "main"]

if __name__ == "__main__":
    sys.exit(main())
