"""Kubernetes-style `$(VAR)` expansion."""

from __future__ import annotations

from steward.runtimes.expand import expand, expand_all, expand_json, resolve_env


def test_expand_known_unknown_and_escape() -> None:
    env = {"PORT": "8080", "HOST": "127.0.0.1"}
    assert expand("$(HOST):$(PORT)", env) == "127.0.0.1:8080"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(PORT)", env) == "$(PORT)"
    assert expand("$$", env) == "$"
    assert expand("$PORT ${PORT}", env) == "$PORT ${PORT}"  # shell syntax is not ours


def test_expand_all_keeps_argv_boundaries() -> None:
    assert expand_all(["a b", "$(X)", "; rm -rf /"], {"X": "1 2"}) == ["a b", "1 2", "; rm -rf /"]


def test_expand_json_recurses() -> None:
    assert expand_json({"a": ["$(X)", 1, {"b": "$(X)"}], "c": None}, {"X": "y"}) == {
        "a": ["y", 1, {"b": "y"}],
        "c": None,
    }


def test_resolve_env_in_order() -> None:
    env = resolve_env([("A", "1"), ("B", "$(A)2"), ("C", "$(D)")], {"PORT": "80"})
    assert env == {"PORT": "80", "A": "1", "B": "12", "C": "$(D)"}
