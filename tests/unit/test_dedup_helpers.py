"""The small shared helpers that replaced copies: a background loop task, a runtime's files,
a lookup by key, the metadata of a cluster-scoped object."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.api.base import lookup, name_and_labels
from steward.k8s.background import BackgroundLoop
from steward.runtimes.base import (
    Adoption,
    Observation,
    Runtime,
    RuntimeContext,
    RuntimeFile,
    ServiceIdentity,
)


class _Counter(BackgroundLoop):
    def __init__(self) -> None:
        self.rounds = 0
        self.cancelled = False

    async def run(self) -> None:
        try:
            while True:
                self.rounds += 1
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def test_background_loop_runs_until_stopped() -> None:
    async def main() -> _Counter:
        loop = _Counter()
        await loop.stop()  # never started: nothing to cancel
        loop.start()
        for _ in range(5):
            await asyncio.sleep(0)
        await loop.stop()  # cancels and waits; CancelledError does not escape
        return loop

    loop = asyncio.run(main())
    assert loop.rounds > 0
    assert loop.cancelled


class _Files(Runtime):
    flavor = "test"
    pid_file = RuntimeFile("x.pid")

    def start(self) -> None: ...
    def stop(self, force: bool = False, grace: float | None = None) -> None: ...
    def observe(self) -> Observation:
        raise NotImplementedError

    def logs(
        self, tail: int | None = None, follow: bool = False, previous: bool = False
    ) -> Iterator[str]:
        return iter(())

    def adopt(self) -> Adoption:
        raise NotImplementedError


def test_runtime_file_follows_the_context(tmp_path: Path) -> None:
    rt = _Files(None, RuntimeContext(ServiceIdentity("ns", "a"), tmp_path / "one"))
    assert rt.pid_file == tmp_path / "one" / "x.pid"
    rt.ctx = RuntimeContext(ServiceIdentity("ns", "a"), tmp_path / "two")
    assert rt.pid_file == tmp_path / "two" / "x.pid"
    assert isinstance(_Files.pid_file, RuntimeFile)
    with pytest.raises(AttributeError):
        rt.pid_file = tmp_path  # read-only, as the properties it replaced


def test_lookup_names_what_and_the_known_keys() -> None:
    items = [("a", 1), ("b", 2)]
    assert lookup(items, lambda i: i[0], "b", "letter") == ("b", 2)
    with pytest.raises(KeyError, match=r"unknown letter 'c' \(known: a, b\)"):
        lookup(iter(items), lambda i: i[0], "c", "letter")


def test_name_and_labels_drops_the_rest_of_metadata() -> None:
    body = {"kind": "K", "metadata": {"name": "n", "uid": "u", "labels": None}, "spec": {}}
    assert name_and_labels(body) == {
        "kind": "K",
        "metadata": {"name": "n", "labels": {}},
        "spec": {},
    }
    assert name_and_labels({})["metadata"] == {"name": None, "labels": {}}
