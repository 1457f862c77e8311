"""Ranks on other machines read the corpus index once a network file system shows it whole."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from pretrain_testing import write_tiny_images

from soco.data import corpus
from soco.data.corpus import read_index_when_visible
from soco_proposals.corpus_index import IncompleteCorpusIndexError, StaleCorpusIndexError, write_corpus_index


@pytest.fixture
def index_files(tmp_path):
    """An image root, the path its index is expected at (not yet there) and a whole index elsewhere."""
    root = write_tiny_images(tmp_path / "images", count=4)
    whole = tmp_path / "written" / "index.txt"
    whole.parent.mkdir()
    write_corpus_index(root, whole)
    shared = tmp_path / "shared"
    shared.mkdir()
    return str(root), shared / "index.txt", whole


def _appears_on_sleep(monkeypatch, events: dict[int, Callable[[], object]]) -> dict[str, int]:
    """Replace the waiting function's pauses and refreshes: ``events[n]`` runs at the ``n``-th pause (the
    file changing on the server); returns the counts of pauses and refreshes."""
    counts = {"sleeps": 0, "refreshes": 0}

    def sleep(seconds: float) -> None:
        assert 0 <= seconds <= 2.0
        counts["sleeps"] += 1
        if counts["sleeps"] in events:
            events[counts["sleeps"]]()

    def refresh(index: str) -> None:
        counts["refreshes"] += 1

    monkeypatch.setattr(corpus.time, "sleep", sleep)
    monkeypatch.setattr(corpus, "_refresh_attributes", refresh)
    return counts


def test_an_index_that_appears_late_is_waited_for(index_files, monkeypatch, caplog):
    root, index, whole = index_files
    counts = _appears_on_sleep(monkeypatch, {3: lambda: shutil.copy(whole, index)})
    with caplog.at_level("INFO", logger="soco.data.corpus"):
        images = read_index_when_visible(str(index), root, timeout_s=60)
    assert [record.key for record in images] == [f"img_{i:03d}" for i in range(4)]
    assert counts == {"sleeps": 3, "refreshes": 3}
    assert "read whole after 4 tries" in caplog.text


def test_an_index_read_cut_short_is_read_again(index_files, monkeypatch):
    root, index, whole = index_files
    data = whole.read_bytes()
    index.write_bytes(data[: len(data) - 5])  # the header and the image lines, the last one cut
    events = {1: lambda: index.write_bytes(b""), 2: lambda: shutil.copy(whole, index)}
    counts = _appears_on_sleep(monkeypatch, events)
    assert len(read_index_when_visible(str(index), root, timeout_s=60)) == 4
    assert counts["sleeps"] == 2


def test_an_index_that_never_appears_is_a_clear_error(index_files):
    root, index, _ = index_files
    expected = r"missing on this machine \(rank 0\) after \d+ tries.*shares"
    with pytest.raises(FileNotFoundError, match=expected):
        read_index_when_visible(str(index), root, timeout_s=0.3)


def test_an_index_that_stays_incomplete_names_the_problem(index_files):
    root, index, whole = index_files
    data = whole.read_bytes()
    index.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # the last image line left out
    expected = r"holds 3 images, its header says 4.*\(still, on this machine"
    with pytest.raises(IncompleteCorpusIndexError, match=expected):
        read_index_when_visible(str(index), root, timeout_s=0.2)


def test_a_stale_index_fails_at_once(index_files, monkeypatch):
    root, index, whole = index_files
    shutil.copy(whole, index)
    write_tiny_images(Path(root) / "new", count=1)  # the corpus changed after the index
    counts = _appears_on_sleep(monkeypatch, {})
    with pytest.raises(StaleCorpusIndexError, match="stale"):
        read_index_when_visible(str(index), root, timeout_s=60)
    assert counts["sleeps"] == 0


def test_refreshing_a_missing_file_or_folder_is_harmless(tmp_path):
    corpus._refresh_attributes(str(tmp_path / "no" / "such" / "index.txt"))
