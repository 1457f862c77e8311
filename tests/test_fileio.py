"""Atomic writes: the final path holds the complete new content, or the old one, never a partial file."""

import pytest

from soco_proposals.fileio import atomic_directory, atomic_write, atomic_write_text


class _Killed(Exception):
    pass


def _half_then_fail(f):
    f.write(b"half")
    raise _Killed


def test_atomic_write_replaces_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, lambda f: f.write(b"first"))
    atomic_write(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")
    with pytest.raises(_Killed):
        atomic_write(target, _half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


def test_atomic_write_text_streams_utf8_lines(tmp_path):
    target = atomic_write_text(tmp_path / "t.txt", (f"{word}\n" for word in ["naïve", "köln"]))
    assert target.read_text(encoding="utf-8") == "naïve\nköln\n"


def test_atomic_directory_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "store"
    with pytest.raises(_Killed), atomic_directory(target) as tmp:
        (tmp / "x.npy").write_bytes(b"1")
        raise _Killed
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "x.npy").write_bytes(b"1")
    assert [p.name for p in target.iterdir()] == ["x.npy"]


def test_atomic_directory_replaces_only_when_asked(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(FileExistsError, match="store already exists"), atomic_directory(target):
        pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
