"""Kubernetes-style `$(VAR)` expansion: `$$` escapes, unknown references stay as written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand one string the way the kubelet expands command and args."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, value)


def expand_all(values: list[str], env: Mapping[str, str]) -> list[str]:
    """Expand each argv element; never joins them into a shell string."""
    return [expand(v, env) for v in values]


def expand_json(value: Any, env: Mapping[str, str]) -> Any:
    """Expand every string inside a JSON value (used for Python kwargs)."""
    if isinstance(value, str):
        return expand(value, env)
    if isinstance(value, list):
        return [expand_json(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_json(v, env) for k, v in value.items()}
    return value


def resolve_env(entries: list[tuple[str, str]], base: Mapping[str, str]) -> dict[str, str]:
    """Resolve ordered (name, value) pairs; each may reference earlier ones and ``base``."""
    out = dict(base)
    for name, value in entries:
        out[name] = expand(value, out)
    return out
