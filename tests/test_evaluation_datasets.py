"""Probe sets: ImageFolder layout errors, resizing, box scaling, crowd and empty-class counts, caching."""

import json
import logging

import numpy as np
import pytest
from probes_testing import register_probe_box_sets, write_probe_image_folder

from soco.data import register_coco_format_dataset
from soco.evaluation import load_box_probe_set, load_image_folder_probe_set


def test_image_folder_splits_share_classes_and_are_resized_and_centre_cropped(tmp_path):
    root = write_probe_image_folder(tmp_path / "folder", per_class=(3, 2))
    train, val, classes = load_image_folder_probe_set(str(root), image_size=32)
    assert classes == ["bright", "dark"]
    assert (len(train), len(val)) == (6, 4)
    sample = train[0]
    assert sample.image.shape == (3, 32, 32) and sample.boxes is None and sample.labels.tolist() == [0]
    assert train[5].labels.tolist() == [1] and int(train[5].image.float().mean()) < 100  # a dark one


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nothing/train' does not exist"):
        load_image_folder_probe_set(str(tmp_path / "nothing"), 32)
    root = write_probe_image_folder(tmp_path / "folder")
    (root / "val" / "dark").rename(root / "val" / "black")
    with pytest.raises(
        ValueError, match=r"different classes \(only in train/: \['dark'\], only in val/: \['black'\]"
    ):
        load_image_folder_probe_set(str(root), 32)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty/train' has no class folders"):
        load_image_folder_probe_set(str(empty), 32)


def test_images_are_cached_after_their_first_use(tmp_path):
    root = write_probe_image_folder(tmp_path / "folder", per_class=(1, 1))
    train, _, _ = load_image_folder_probe_set(str(root), image_size=32)
    first = train[0]
    for path in root.rglob("*.png"):
        path.unlink()
    assert train[0] is first


def test_boxes_are_scaled_with_the_detectors_test_resize(tmp_path):
    train_name, test_name = register_probe_box_sets(tmp_path, "scaled_boxes", sizes=(3, 2))
    train, test, classes = load_box_probe_set(train_name, test_name, min_size=64, max_size=1000)
    assert classes == ["rectangle", "ellipse"] and len(train) == 3 and len(test) == 2
    record = json.loads((tmp_path / train_name / "annotations.json").read_text())
    image, annotations = record["images"][0], [a for a in record["annotations"] if a["image_id"] == 1]
    scale = 64 / min(image["width"], image["height"])
    sample = train[0]
    assert sample.image.shape[1:] == (round(image["height"] * scale), round(image["width"] * scale))
    x, y, w, h = annotations[0]["bbox"]
    np.testing.assert_allclose(sample.boxes[0].numpy(), np.array([x, y, x + w, y + h]) * scale, rtol=0.02)
    assert sample.labels.tolist() == [a["category_id"] - 1 for a in annotations]


def test_crowd_boxes_images_without_boxes_and_empty_classes_are_counted(tmp_path, caplog):
    train_name, test_name = register_probe_box_sets(tmp_path, "counted_boxes", sizes=(3, 2))
    json_file = tmp_path / train_name / "annotations.json"
    record = json.loads(json_file.read_text())
    for annotation in record["annotations"]:
        annotation["iscrowd"] = int(annotation["image_id"] == 1 or annotation["category_id"] == 2)
    record["categories"].append({"id": 3, "name": "triangle"})
    crowd = sum(a["iscrowd"] for a in record["annotations"])
    (tmp_path / "crowded.json").write_text(json.dumps(record))
    register_coco_format_dataset(
        "crowded_train", str(tmp_path / "crowded.json"), str(tmp_path / train_name / "images")
    )
    test_record = json.loads((tmp_path / test_name / "annotations.json").read_text())
    test_record["categories"].append({"id": 3, "name": "triangle"})
    (tmp_path / "test3.json").write_text(json.dumps(test_record))
    register_coco_format_dataset(
        "crowded_test", str(tmp_path / "test3.json"), str(tmp_path / test_name / "images")
    )
    with caplog.at_level(logging.INFO, logger="soco.evaluation.datasets"):
        train, _, classes = load_box_probe_set("crowded_train", "crowded_test", 64, 128)
    assert classes == ["rectangle", "ellipse", "triangle"]
    line = next(r.getMessage() for r in caplog.records if "crowded_train" in r.getMessage())
    assert f"{crowd} crowd boxes" in line and "1 images without boxes" in line
    assert "2 classes without boxes (ellipse, triangle)" in line
    assert all(1 not in train[i].labels.tolist() for i in range(len(train)))


def test_box_sets_must_be_registered_and_share_classes(tmp_path):
    train_name, _ = register_probe_box_sets(tmp_path, "lonely_boxes", sizes=(2, 1))
    with pytest.raises(KeyError, match="'never_registered' is not a registered dataset"):
        load_box_probe_set(train_name, "never_registered", 64, 128)
    record = json.loads((tmp_path / train_name / "annotations.json").read_text())
    record["categories"][1]["name"] = "circle"
    (tmp_path / "renamed.json").write_text(json.dumps(record))
    register_coco_format_dataset(
        "renamed_boxes", str(tmp_path / "renamed.json"), str(tmp_path / train_name / "images")
    )
    with pytest.raises(ValueError, match="different classes"):
        load_box_probe_set(train_name, "renamed_boxes", 64, 128)


def test_a_test_split_that_is_not_held_out_is_refused_naming_both(tmp_path):
    train_name, test_name = register_probe_box_sets(tmp_path, "leaky_boxes", sizes=(3, 2))
    with pytest.raises(ValueError, match="same dataset 'leaky_boxes_train'"):  # was an IndexError
        load_box_probe_set(train_name, train_name, 64, 128)
    train_json, train_images = tmp_path / train_name / "annotations.json", tmp_path / train_name / "images"
    register_coco_format_dataset("leaky_alias", str(train_json), str(train_images))
    with pytest.raises(ValueError, match=r"'leaky_boxes_train' \(train\) and 'leaky_alias' \(test\) are the "
                       r"same annotation file .*annotations.json under two names"):  # fmt: skip
        load_box_probe_set(train_name, "leaky_alias", 64, 128)
    # another annotation file over the training images: the same image files
    (tmp_path / "copy.json").write_text(train_json.read_text())
    register_coco_format_dataset("same_files", str(tmp_path / "copy.json"), str(train_images))
    with pytest.raises(ValueError, match=r"share 3 image files \(e.g. .*shapes_001.png\)"):
        load_box_probe_set(train_name, "same_files", 64, 128)
    # a held-out set whose first image is a copy of a training image: the same bytes
    test_images = tmp_path / test_name / "images"
    (test_images / "shapes_001.png").write_bytes((train_images / "shapes_002.png").read_bytes())
    copied = r"test .*leaky_boxes_test/images/shapes_001.png = train .*_train/images/shapes_002.png"
    with pytest.raises(ValueError, match=rf"share 1 images with identical bytes \(e.g. {copied}\)"):
        load_box_probe_set(train_name, test_name, 64, 128)


def test_an_image_folder_whose_val_copies_a_train_image_is_refused(tmp_path):
    root = write_probe_image_folder(tmp_path / "folder", per_class=(2, 1))
    (root / "val" / "dark" / "copied.png").write_bytes((root / "train" / "dark" / "dark_0.png").read_bytes())
    with pytest.raises(ValueError, match=r"'.*folder/train' \(train\) and '.*folder/val' \(test\) share 1 "):
        load_image_folder_probe_set(str(root), 32)


def test_an_undecodable_image_is_left_out_and_counted_not_raised(tmp_path):
    root = write_probe_image_folder(tmp_path / "folder", per_class=(2, 1))
    (root / "train" / "dark" / "dark_1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "train" / "bright" / "empty.png").write_bytes(b"")
    train, _, _ = load_image_folder_probe_set(str(root), 32)
    samples = [train[i] for i in range(len(train))]
    assert sum(s is None for s in samples) == 2
    assert sorted(kind.split(":")[0] for kind in train.failures.values()) == ["empty_file", "truncated"]
