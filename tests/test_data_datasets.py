"""Registering users' COCO-format datasets."""

import json
import logging

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from transfer_testing import write_tiny_coco_dataset

from soco.data.datasets import (
    boxes_per_category,
    check_num_classes,
    log_classes_without_boxes,
    register_coco_format_dataset,
    registered_box_counts,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_coco_dataset(tmp_path_factory.mktemp("shapes"), num_images=3)


def test_register_loads_records_and_is_idempotent(dataset):
    json_file, images = map(str, dataset)
    register_coco_format_dataset("soco_test_shapes", json_file, images)
    register_coco_format_dataset("soco_test_shapes", json_file, images)  # same files: no error
    records = DatasetCatalog.get("soco_test_shapes")
    assert len(records) == 3 and all(r["annotations"] for r in records)
    assert records[0]["annotations"][0]["segmentation"], "polygon masks are read"
    meta = MetadataCatalog.get("soco_test_shapes")
    assert meta.evaluator_type == "coco" and meta.thing_classes == ["rectangle", "ellipse"]
    assert len(boxes_per_category(json_file)) == 2


def test_name_clash_and_missing_files_are_errors(dataset, tmp_path):
    json_file, images = map(str, dataset)
    register_coco_format_dataset("soco_test_clash", json_file, images)
    other = tmp_path / "other.json"
    other.write_text(dataset[0].read_text())
    with pytest.raises(ValueError, match="already registered"):
        register_coco_format_dataset("soco_test_clash", str(other), images)
    with pytest.raises(FileNotFoundError, match="annotation file"):
        register_coco_format_dataset("soco_test_missing", str(tmp_path / "nope.json"), images)
    with pytest.raises(FileNotFoundError, match="image folder"):
        register_coco_format_dataset("soco_test_missing", json_file, str(tmp_path / "nope"))


def test_num_classes_must_match_the_training_dataset(dataset):
    json_file, images = map(str, dataset)
    register_coco_format_dataset("soco_test_classes", json_file, images)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("soco_test_classes",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    check_num_classes(cfg, registered_box_counts(["soco_test_classes"]))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    with pytest.raises(ValueError, match="'MODEL.ROI_HEADS.NUM_CLASSES 2'"):
        check_num_classes(cfg, registered_box_counts(["soco_test_classes"]))
    cfg.DATASETS.TRAIN = ("coco_2017_train",)
    check_num_classes(cfg, registered_box_counts(["soco_test_classes"]))  # only training datasets are checked


def test_classes_without_boxes_are_counted_in_the_log(dataset, tmp_path, caplog):
    json_file, images = dataset
    content = json.loads(json_file.read_text())
    content["categories"].append({"id": 3, "name": "triangle"})
    three = tmp_path / "three.json"
    three.write_text(json.dumps(content))
    assert boxes_per_category(str(three)) == {
        "rectangle": sum(a["category_id"] == 1 for a in content["annotations"]),
        "ellipse": sum(a["category_id"] == 2 for a in content["annotations"]),
        "triangle": 0,
    }
    register_coco_format_dataset("soco_test_empty_class", str(three), str(images))
    register_coco_format_dataset("soco_test_full", str(json_file), str(images))
    with caplog.at_level(logging.WARNING, logger="soco.data.datasets"):
        log_classes_without_boxes(registered_box_counts(["soco_test_empty_class", "soco_test_full"]))
    assert [r.getMessage() for r in caplog.records] == [
        "dataset soco_test_empty_class: 1 of 3 classes have no boxes (triangle)"
    ]
