"""Copy-paste labeled set: exact masks under occlusion, COCO fields; the real-photo corpus."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "demo"))  # the demo's modules live next to its scripts

from copy_paste import (  # noqa: E402
    CATEGORIES,
    CutOut,
    build_copy_paste_dataset,
    build_image_folder,
    compose_image,
    mask_to_annotation,
)
from photos import write_photo_corpus  # noqa: E402

PHOTO_CACHE = REPO / ".data" / "photos"


def test_mask_to_annotation_box_area_polygon():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:18] = True
    ann = mask_to_annotation(mask)
    assert ann["bbox"] == [10.0, 5.0, 8.0, 10.0]
    assert ann["area"] == 80.0 and ann["iscrowd"] == 0
    xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10, 17, 5, 14)
    tiny = np.zeros((20, 30), bool)
    tiny[0:3, 0:3] = True
    assert mask_to_annotation(tiny) is None


def test_composite_masks_are_exact_under_occlusion():
    rng = np.random.default_rng(0)
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    cutouts = []
    for name, colour in colours.items():
        mask = np.zeros((30, 30), bool)
        mask[3:27, 5:25] = True
        cutouts.append(CutOut(np.full((30, 30, 3), colour, np.uint8), mask, name))
    background = np.full((64, 80, 3), 128, np.uint8)
    for _ in range(10):
        canvas, instances = compose_image(
            background, cutouts, rng, objects_per_image=(3, 4), long_side_range=(20, 30)
        )
        covered = np.zeros(canvas.shape[:2], bool)
        for category, mask in instances:
            assert not (covered & mask).any(), "visible masks of two instances overlap"
            covered |= mask
            assert (canvas[mask] == colours[category]).all(), "a visible mask covers pixels of another object"
        assert (canvas[~covered] == 128).all(), "object pixels outside every mask"


@pytest.mark.slow
def test_real_photo_corpus_and_labeled_set(tmp_path):
    assert PHOTO_CACHE.is_dir(), f"{PHOTO_CACHE} is missing: run tools/setup_env.sh (make setup) first"
    photos = write_photo_corpus(PHOTO_CACHE, tmp_path / "corpus", max_side=128)
    assert len(photos) >= 50
    splits = build_copy_paste_dataset(
        PHOTO_CACHE, tmp_path / "labeled", num_train=6, num_val=3, size=(96, 72)
    )
    train = json.loads(splits["train"].read_text())
    assert len(train["images"]) == 6 and len(train["annotations"]) >= 6
    assert {c["name"] for c in train["categories"]} == {"coin", "fish", "quokka"}
    for ann in train["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 72 and ann["area"] <= w * h


@pytest.mark.slow
def test_image_folder_of_the_image_level_probe(tmp_path):
    assert PHOTO_CACHE.is_dir(), f"{PHOTO_CACHE} is missing: run tools/setup_env.sh (make setup) first"
    counts = build_image_folder(
        PHOTO_CACHE, tmp_path, train_per_category=2, val_per_category=1, size=(48, 40)
    )
    assert counts == {"train": 2 * len(CATEGORIES), "val": len(CATEGORIES)}
    for split, per_category in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == sorted(CATEGORIES)
        for category in CATEGORIES:
            images = sorted((tmp_path / split / category).glob("*.jpg"))
            assert len(images) == per_category
            assert Image.open(images[0]).size == (48, 40)
