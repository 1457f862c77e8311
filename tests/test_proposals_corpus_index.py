"""The corpus index: round trip for every layout, stale indexes, the command that builds it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus_testing import zip_tree
from pretrain_testing import write_tiny_images

from soco_proposals.corpus_index import StaleCorpusIndexError, read_corpus_index, write_corpus_index
from soco_proposals.image_list import list_images

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "train"
    for wnid in ("n01", "n02"):
        write_tiny_images(root / wnid, count=3)
        for path in (root / wnid).glob("img_*.jpg"):
            path.rename(path.with_name(f"{wnid}_{path.name}"))
    return root


def _records(images):
    return [(r.path, r.key, r.member) for r in images]


def test_index_round_trip_for_a_folder_a_map_file_and_a_zip(tree, tmp_path):
    map_file = tmp_path / "train_map.txt"
    map_file.write_text("".join(f"train/{name}\t1\n" for name in list_images(tree).names))
    (tmp_path / "zipped").mkdir()
    archive = zip_tree(tree, tmp_path / "zipped" / "train.zip")
    for root in (tree, map_file, archive):
        index = tmp_path / f"index_{root.name}.txt"
        written = write_corpus_index(root, index)
        assert _records(read_corpus_index(index, root)) == _records(written) == _records(list_images(root))
        header = index.read_text().splitlines()[:4]
        assert header[0] == "# soco-corpus-index 1" and header[1] == f"# root\t{os.path.abspath(root)}"
        assert header[3] == "# count\t6"
    assert list(tmp_path.glob(".*tmp*")) == [], "written atomically"


def test_an_existing_index_is_not_overwritten_silently(tree, tmp_path):
    index = tmp_path / "index.txt"
    write_corpus_index(tree, index)
    with pytest.raises(FileExistsError, match="already exists"):
        write_corpus_index(tree, index)
    write_corpus_index(tree, index, overwrite=True)


def test_a_stale_index_says_how_to_rebuild_it(tree, tmp_path):
    index = tmp_path / "index.txt"
    write_corpus_index(tree, index)
    other = write_tiny_images(tmp_path / "other", count=2)
    with pytest.raises(StaleCorpusIndexError, match="it lists .*train, the image root is .*other"):
        read_corpus_index(index, other)
    time.sleep(0.05)  # past the file system's timestamp granularity
    (tree / "n02" / "n02_new.jpg").write_bytes((tree / "n02" / "n02_img_000.jpg").read_bytes())
    with pytest.raises(StaleCorpusIndexError, match=r"n02 was modified.*build_corpus_index.py --image-root"):
        read_corpus_index(index, tree)
    write_corpus_index(tree, index, overwrite=True)
    assert len(read_corpus_index(index, tree)) == 7
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:-2]) + "\n")  # count differs from the header
    with pytest.raises(StaleCorpusIndexError, match="holds 5 images, its header says 7"):
        read_corpus_index(index, tree)
    index.write_text("n01/x.jpg\n")
    with pytest.raises(ValueError, match="not a corpus index"):
        read_corpus_index(index, tree)


def test_a_changed_zip_makes_its_index_stale(tree, tmp_path):
    archive = zip_tree(tree, tmp_path / "train.zip")
    index = tmp_path / "index.txt"
    write_corpus_index(archive, index)
    time.sleep(0.05)
    zip_tree(tree, archive)
    with pytest.raises(StaleCorpusIndexError, match="train.zip was modified"):
        read_corpus_index(index, archive)


def test_build_corpus_index_command(tree, tmp_path):
    index = tmp_path / "index.txt"
    command = [sys.executable, str(REPO / "tools" / "build_corpus_index.py"), "--image-root", str(tree)]
    command += ["--output", str(index)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "6 images" in done.stderr and len(read_corpus_index(index, tree)) == 6
    again = subprocess.run(command, capture_output=True, text=True, env=env)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_a_corrupt_zip_line_is_an_error(tree, tmp_path):
    archive = zip_tree(tree, tmp_path / "train.zip")
    index = tmp_path / "index.txt"
    write_corpus_index(archive, index)
    text = index.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    assert last.split("\t")[1].isdigit() and len(last.split("\t")[1]) == 15
    index.write_text(text.replace(last, last[:-5] + "x" + last[-4:]))
    with pytest.raises(ValueError, match="non-digit"):
        read_corpus_index(index, archive)
