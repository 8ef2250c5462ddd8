"""Building a runtime's context: resolved env (with Secret values tracked) and identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from steward.api.common import EnvVar, KeySelector
from steward.runtimes.base import Resolver, RuntimeFailure
from steward.runtimes.expand import expand

ValueResolver = Callable[[str, KeySelector], str | None]
"""The older shape, still accepted by Service: (kind, selector) -> value; None: missing."""


class NoCluster:
    """Without a cluster (and no files to read) there is nothing to resolve against."""

    def read(self, kind: str, name: str) -> Mapping[str, str] | None:
        raise RuntimeFailure(
            f"{kind} {name} needs a Kubernetes cluster (or a resolver passed to Service)",
            reason="ValueFromUnavailable",
        )


no_cluster_resolver = NoCluster()


class _Keys(Mapping[str, str]):
    """One object seen through a key-by-key resolver: lookups work, listing does not."""

    def __init__(self, fn: ValueResolver, kind: str, name: str) -> None:
        self.fn, self.kind, self.name = fn, kind, name

    def __getitem__(self, key: str) -> str:
        value = self.fn(self.kind, KeySelector(name=self.name, key=key))
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        raise RuntimeFailure(
            f"{self.kind} {self.name}: this resolver answers single keys only (set key:)",
            reason="ValueFromUnavailable",
        )

    def __len__(self) -> int:
        return 0


class _KeyResolver:
    def __init__(self, fn: ValueResolver) -> None:
        self.fn = fn

    def read(self, kind: str, name: str) -> Mapping[str, str] | None:
        return _Keys(self.fn, kind, name)


def as_resolver(resolver: Resolver | ValueResolver | None) -> Resolver:
    """The one resolver a Service uses, for env valueFrom and Terraform varsFrom alike."""
    if resolver is None:
        return no_cluster_resolver
    if isinstance(resolver, Resolver):
        return resolver
    return _KeyResolver(resolver)


def resolve_env(
    entries: list[EnvVar], base: dict[str, str], resolver: Resolver
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
        data = resolver.read(kind, ref.name)
        value = None if data is None else data.get(ref.key)
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
