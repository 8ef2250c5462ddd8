"""Building a runtime's context: resolved env (with Secret values tracked) and identity."""

from __future__ import annotations

from collections.abc import Callable

from steward.api.common import EnvVar, KeySelector
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.expand import expand

ValueResolver = Callable[[str, KeySelector], str | None]
"""(kind, selector) -> value; kind is "secret" or "configMap". None: missing."""


def no_cluster_resolver(kind: str, ref: KeySelector) -> str | None:
    """Without a cluster there is nothing to resolve valueFrom against."""
    raise RuntimeFailure(
        f"env valueFrom {kind} {ref.name}/{ref.key} needs a Kubernetes cluster "
        "(or a resolver passed to Service)",
        reason="ValueFromUnavailable",
    )


def resolve_env(
    entries: list[EnvVar], base: dict[str, str], resolver: ValueResolver
) -> tuple[dict[str, str], set[str]]:
    """Resolve env in order (each may reference earlier ones); return values and secret values."""
    out = dict(base)
    secrets: set[str] = set()
    for e in entries:
        if e.value_from is None:
            out[e.name] = expand(e.value or "", out)
            continue
        src = e.value_from
        kind, ref = (
            ("secret", src.secret_key_ref)
            if src.secret_key_ref
            else ("configMap", src.config_map_key_ref)
        )
        assert ref is not None
        value = resolver(kind, ref)
        if value is None:
            if ref.optional:
                continue
            raise RuntimeFailure(
                f"env {e.name}: {kind} {ref.name} has no key {ref.key}", reason="ValueFromMissing"
            )
        out[e.name] = value
        if kind == "secret":
            secrets.add(value)
    return out, secrets
