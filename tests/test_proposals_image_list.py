"""Listing a corpus (folder, train_map.txt, zip) into numpy buffers, and the strings they are made of."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from corpus_testing import zip_tree
from pretrain_testing import write_tiny_images

from soco_proposals.image_list import ImageList, ImageRecord, image_key, list_corpus, list_images
from soco_proposals.packed_strings import PackedStrings
from soco_proposals.zip_archive import ZipMember


@pytest.fixture
def tree(tmp_path):
    """Files at the root, in class folders and in a nested folder, with names that sort differently."""
    root = tmp_path / "train"
    for folder, prefix in (("b", "b"), ("a", "a"), ("a/sub", "s"), ("c", "c")):
        write_tiny_images(root / folder, count=2)
        for path in (root / folder).glob("img_*.jpg"):
            path.rename(path.with_name(f"{prefix}_{path.name}"))
    (root / "top.JPEG").write_bytes((root / "b" / "b_img_000.jpg").read_bytes())
    (root / "notes.txt").write_text("not an image")
    return root


def old_listing(root) -> list[ImageRecord]:
    """The listing of the record-list implementation: os.walk top-down, sorted names, absolute paths."""
    records = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith((".jpg", ".jpeg")):
                path = os.path.abspath(os.path.join(dirpath, name))
                records.append(ImageRecord(path, os.path.basename(path).split(".")[0]))
    return records


def test_packed_strings_round_trip_and_keys():
    items = ["n01/n01_1.JPEG", "", "top.jpg", "ü/é.x.png", "dir.x/file", "noext"]
    packed = PackedStrings.from_strings(items)
    assert list(packed) == items and len(packed) == 6 and packed[3] == "ü/é.x.png"
    assert list(packed[1:3]) == ["", "top.jpg"] and list(packed.take(np.array([5, 0]))) == ["noext", items[0]]
    keys = packed.fixed_width(*packed.key_spans())
    assert [k.decode() for k in keys] == [image_key(item) for item in items]
    assert list(PackedStrings.from_lines(b"a\n\nb\n")) == ["a", "b"]
    assert list(PackedStrings.from_lines(b"a\n\nb", strip_empty=False)) == ["a", "", "b"]
    assert len(PackedStrings.from_strings([])) == 0 and list(PackedStrings.from_strings([""])) == [""]
    assert b"".join(packed.as_lines()) == "".join(f"{item}\n" for item in items).encode()
    assert list(packed.take(np.array([2, 0])).as_lines()) == [b"top.jpg\n", b"n01/n01_1.JPEG\n"]


def test_folder_listing_matches_the_record_list_order(tree):
    images = list_images(tree)
    assert isinstance(images, ImageList) and not images.is_zip
    assert list(images) == old_listing(tree)
    assert images[0].path == str(tree / "top.JPEG") and images[0].key == "top"
    assert [k.decode() for k in images.key_array()] == [r.key for r in old_listing(tree)]
    subset = images.subset(np.array([3, 0]))
    assert [r.key for r in subset] == [images[3].key, "top"] and list(images[1:3]) == list(images)[1:3]


def test_an_image_list_is_three_arrays_not_a_python_object_per_image():
    paths = [f"n{i // 1300:08d}/n{i // 1300:08d}_{i}.JPEG" for i in range(100_000)]
    images = ImageList("/data/train", PackedStrings.from_strings(paths))
    arrays = (images.names.buffer, images.names.starts, images.names.ends)
    assert all(isinstance(a, np.ndarray) for a in arrays)
    text = sum(len(p) + 1 for p in paths)
    assert images.names.nbytes() == text + 16 * len(paths)  # UTF-8 text + two int64 offsets per image
    assert images[99_999].key == "n00000076_99999" and images[99_999].path == "/data/train/" + paths[-1]


def test_map_file_listing(tree):
    images = list_images(tree)
    map_file = tree / "train_map.txt"
    map_file.write_text("".join(f"{name}\t{index % 3}\n" for index, name in enumerate(images.names)) + "\n")
    from_map = list_images(map_file)
    assert [r.path for r in from_map] == [r.path for r in images]
    map_file.write_text("a/a_img_000.jpg 5\nnot_an_image.txt\n")
    with pytest.raises(ValueError, match="train_map.txt:2: expected an image path"):
        list_images(map_file)


@pytest.mark.parametrize("with_map", [True, False])
def test_zip_listing_has_the_folder_keys_and_order(tree, tmp_path, with_map):
    archive = zip_tree(tree, tmp_path / "train.zip", with_map=with_map)
    images, stamps = list_corpus(archive)
    assert images.is_zip and [r.key for r in images] == [r.key for r in list_images(tree)]
    record = images[1]
    assert record.path == f"{archive.resolve()}@/{images.names[1]}" and isinstance(record.member, ZipMember)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(images.names[1])
    assert (record.member.header_offset, record.member.compressed_size) == (
        info.header_offset,
        info.compress_size,
    )
    assert [s.path for s in stamps] == [str(archive.resolve())] + (
        [str(tmp_path / "train_map.txt")] if with_map else []
    )


def test_zip_map_naming_a_missing_member_is_an_error(tree, tmp_path):
    archive = zip_tree(tree, tmp_path / "train.zip")
    (tmp_path / "train_map.txt").write_text("a/a_img_000.jpg\t0\nmissing/x.JPEG\t1\n")
    with pytest.raises(ValueError, match="not members of .*missing/x.JPEG"):
        list_images(archive)


def test_duplicate_keys_and_empty_roots_are_errors(tmp_path):
    root = write_tiny_images(tmp_path / "imgs", count=1)
    (root / "sub").mkdir()
    (root / "sub" / "img_000.png").write_bytes((root / "img_000.jpg").read_bytes())
    with pytest.raises(ValueError, match="share the key 'img_000'"):
        list_images(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="image root is empty"):
        list_images("")
