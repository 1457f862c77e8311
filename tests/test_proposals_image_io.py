"""Decoding corpus images: every kind of failure is recognised and named; conversions are noted."""

from __future__ import annotations

import numpy as np
import pytest
from corpus_testing import write_bad_images, zip_tree
from PIL import Image

from soco_proposals.image_io import DECODE_FAILURES, ImageDecodeError, decode_rgb
from soco_proposals.image_list import list_images


def test_each_kind_of_bad_file_is_named(tmp_path):
    bad = write_bad_images(tmp_path)
    bad["unreadable"] = tmp_path / "missing.jpg"
    assert set(bad) == set(DECODE_FAILURES)
    for kind, path in bad.items():
        with pytest.raises(ImageDecodeError) as caught:
            decode_rgb(str(path))
        assert caught.value.kind == kind and caught.value.path == str(path), (kind, caught.value)


def test_conversions_are_made_and_noted(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(pixels).quantize(8).save(tmp_path / "palette.png")
    Image.fromarray(pixels).save(tmp_path / "rgb.jpg")
    for name, expected in (("cmyk.jpg", ["mode:CMYK->RGB"]), ("palette.png", ["format:PNG", "mode:P->RGB"])):
        notes: list[str] = []
        image = decode_rgb(str(tmp_path / name), notes)
        assert image.mode == "RGB" and image.size == (30, 20) and notes == expected
    notes = []
    decoded = decode_rgb(str(tmp_path / "rgb.jpg"), notes)
    with Image.open(tmp_path / "rgb.jpg") as reference:
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(reference.convert("RGB")))
    assert notes == []


def test_zip_members_decode_like_files_and_fail_alike(tmp_path):
    folder = tmp_path / "train"
    write_bad_images(folder / "n01")
    Image.fromarray(np.full((20, 30, 3), 7, dtype=np.uint8)).save(folder / "n01" / "good.jpg")
    images = list_images(zip_tree(folder, tmp_path / "train.zip"))
    for record in images:
        file_path = folder / record.path.split("@/")[1]
        if record.key == "good":
            np.testing.assert_array_equal(
                np.asarray(decode_rgb(record)), np.asarray(decode_rgb(str(file_path)))
            )
            continue
        with pytest.raises(ImageDecodeError) as from_zip:
            decode_rgb(record)
        with pytest.raises(ImageDecodeError) as from_file:
            decode_rgb(str(file_path))
        assert from_zip.value.kind == from_file.value.kind and "train.zip@/n01/" in from_zip.value.path
