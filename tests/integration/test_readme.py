"""The README's library example runs as written (with its own state dir)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_library_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    code = re.search(r"## Library use\n\n```python\n(.*?)```", text, re.S)
    assert code is not None, "the README lost its library example"
    source = code.group(1).replace("/tmp/steward-state", str(tmp_path / "state"))
    scope: dict[str, object] = {}
    exec(compile(source, "README.md", "exec"), scope)  # our own README
    svc = scope["svc"]
    assert svc.status.state.value == "inactive"  # type: ignore[attr-defined]
    assert svc.status.endpoint.uri.startswith("http://127.0.0.1:")  # type: ignore[attr-defined]
