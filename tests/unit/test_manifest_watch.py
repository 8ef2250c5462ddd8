"""Local mode's look for changed manifest files: one stat per path, and every kind of
change an editor or a GitOps checkout makes is seen."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from steward.local.manifests import changed, discover, snapshot


def _edit(root: Path) -> None:
    f = root / "a.yaml"
    f.write_text("kind: ManagedService # edited\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # past the clock's grain


def _add_nested(root: Path) -> None:
    (root / "sub" / "new.yaml").write_text("kind: ConfigMap\n")


def _add_dir(root: Path) -> None:
    (root / "team").mkdir()


def _remove(root: Path) -> None:
    (root / "a.yaml").unlink()


def _rename_into_place(root: Path) -> None:
    tmp = root / ".a.yaml.swp"
    tmp.write_text("kind: ManagedService\n")
    tmp.replace(root / "a.yaml")


@pytest.mark.parametrize(
    "change", [_edit, _add_nested, _add_dir, _remove, _rename_into_place], ids=lambda f: f.__name__
)
def test_every_change_is_seen(tmp_path: Path, change: Callable[[Path], None]) -> None:
    root = tmp_path / "m"
    (root / "sub").mkdir(parents=True)
    (root / "a.yaml").write_text("kind: ManagedService\n")
    (root / "sub" / "b.yml").write_text("kind: Secret\n")
    watched = snapshot([root], discover([root]))
    assert not changed(watched)
    change(root)
    assert changed(watched)


def test_a_named_file_that_appears_later_is_seen(tmp_path: Path) -> None:
    missing = tmp_path / "later.yaml"
    watched = snapshot([missing], discover([missing]))
    assert not changed(watched)
    missing.write_text("kind: ManagedService\n")
    assert changed(watched)
