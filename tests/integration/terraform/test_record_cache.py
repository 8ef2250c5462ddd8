"""observe() re-reads Steward's record only when another writer replaced it (one stat otherwise)."""

from __future__ import annotations

from pathlib import Path

from steward.runtimes.terraform.workspace import ApplyRecord, Record, Workspace


def test_changed_sees_other_writers_and_not_its_own(tmp_path: Path) -> None:
    mine, other = Workspace(tmp_path), Workspace(tmp_path)
    assert not mine.changed()  # nothing on disk, nothing loaded
    mine.save(Record(init_count=1))
    assert not mine.changed()  # its own save
    assert other.changed()  # never loaded it
    assert other.load().init_count == 1
    assert not other.changed()
    other.save(Record(init_count=2, last_apply=ApplyRecord(ok=True)))
    assert mine.changed()  # replaced by another writer (another Steward process)
    assert mine.load().init_count == 2
    assert not mine.changed()
    mine.record_path.unlink()
    assert mine.changed()  # gone: the next load starts from nothing
    assert mine.load() == Record()
    assert not mine.changed()
