"""Labelled images: ImageFolder trees, train.zip / val.zip with map files, class matching, bad images."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from linear_testing import write_colour_folder
from PIL import Image

from soco.data.labeled_images import (
    DECODED,
    CenterCropDataset,
    LabeledTrainDataset,
    RandomResizedCropFlip,
    list_labeled_images,
    match_classes,
)
from soco_proposals.image_io import DECODE_FAILURES


def test_image_folder_classes_are_sorted_folder_names_and_file_names_may_repeat(tmp_path):
    root = write_colour_folder(tmp_path / "train", per_class=2)
    Image.new("RGB", (8, 8)).save(root / "red" / "blue_0.png")  # same file name as an image of another class
    data = list_labeled_images(root)
    assert data.classes == ["blue", "green", "red"]
    names = list(data.images.names)
    assert len(names) == 7
    for name, label in zip(names, data.labels, strict=True):
        assert name.split("/")[0] == data.classes[label]


def _zip_tree(folder, archive):
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix(), compress_type=zipfile.ZIP_STORED)
    return archive


def test_zip_with_class_folders_and_val_zip_with_integer_map_labels(tmp_path):
    train_dir = write_colour_folder(tmp_path / "train", per_class=2)
    train = list_labeled_images(_zip_tree(train_dir, tmp_path / "train.zip"))
    assert train.classes == ["blue", "green", "red"] and not train.from_map
    assert np.bincount(train.labels).tolist() == [2, 2, 2]
    sample = CenterCropDataset(train, resize=20, size=16)[5]  # decoded from the zip member by offset
    assert (
        int(sample["failure"]) == DECODED and int(sample["label"]) == 2 and sample["image"].float().mean() > 0
    )
    # the Swin / original-SoCo val layout: flat member names, "<name>\t<class index>" in val_map.txt
    val_zip = tmp_path / "val.zip"
    with zipfile.ZipFile(val_zip, "w") as zf:
        for i in range(3):
            image = train_dir / ["blue", "green", "red"][i] / f"{['blue', 'green', 'red'][i]}_0.png"
            zf.write(image, f"ILSVRC2012_val_{i:08d}.png")
    (tmp_path / "val_map.txt").write_text("".join(f"ILSVRC2012_val_{i:08d}.png\t{2 - i}\n" for i in range(3)))
    val = list_labeled_images(val_zip)
    assert val.from_map.endswith("val_map.txt") and val.labels.tolist() == [2, 1, 0]
    with pytest.raises(ValueError, match="labelled by class folder names.*integer labels of a map file"):
        match_classes(train, val)


def test_validation_classes_are_renumbered_as_training_and_unknown_ones_refused(tmp_path):
    train = list_labeled_images(write_colour_folder(tmp_path / "train", per_class=1))
    val_root = tmp_path / "val"
    (val_root / "red").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(val_root / "red" / "r.png")
    val = match_classes(train, list_labeled_images(val_root))
    assert val.labels.tolist() == [2] and val.classes == train.classes
    (val_root / "purple").mkdir()
    Image.new("RGB", (8, 8)).save(val_root / "purple" / "p.png")
    with pytest.raises(ValueError, match=r"validation classes \['purple'\].*no training images"):
        match_classes(train, list_labeled_images(val_root))


def test_map_file_images_outside_class_folders_need_labels(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "train_map.txt").write_text("a.png\n")
    with pytest.raises(ValueError, match="'a.png' is not inside a class folder"):
        list_labeled_images(tmp_path / "train_map.txt")


def test_unreadable_validation_image_is_marked_not_replaced(tmp_path):
    root = write_colour_folder(tmp_path / "val", per_class=1)
    (root / "green" / "green_0.png").write_bytes(b"not an image")
    data = list_labeled_images(root)
    dataset = CenterCropDataset(data, resize=20, size=16)
    samples = [dataset[i] for i in range(len(dataset))]
    failures = [int(s["failure"]) for s in samples]
    assert failures == [DECODED, DECODE_FAILURES.index("not_an_image"), DECODED]
    assert samples[0]["image"].shape == (3, 16, 16) and samples[0]["image"].dtype == torch.uint8
    assert [int(s["label"]) for s in samples] == [0, 1, 2]


def test_training_sample_takes_the_label_of_the_replacement_image(tmp_path):
    root = write_colour_folder(tmp_path / "train", per_class=1)
    (root / "blue" / "blue_0.png").write_bytes(b"")
    dataset = LabeledTrainDataset(list_labeled_images(root), RandomResizedCropFlip(16, (0.5, 1.0)), seed=0)
    sample = dataset[(0, 0)]
    assert int(sample["image_index"]) != 0
    assert int(sample["label"]) == int(sample["image_index"])  # one image per class: label = index
    assert int(sample["skipped_images"][DECODE_FAILURES.index("empty_file")]) >= 1
    assert sample["image"].shape == (3, 16, 16)
