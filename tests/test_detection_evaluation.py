"""The evaluator follows the dataset's evaluator_type; the real LVIS and VOC evaluators score the
ground truth of the tiny datasets as perfect."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_pascal_voc
from detectron2.data.datasets.lvis import get_lvis_instances_meta, register_lvis_instances
from detectron2.evaluation import LVISEvaluator, PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, BoxMode, Instances, polygons_to_bitmask
from transfer_testing import write_tiny_lvis_dataset, write_tiny_voc_dataset

from soco.detection import evaluation


def test_builtin_datasets_get_their_evaluator(monkeypatch, tmp_path):
    calls = []
    for kind in ("coco", "lvis"):  # the real ones read the (absent) annotation files at construction
        monkeypatch.setitem(
            evaluation.EVALUATOR_BUILDERS, kind, lambda name, folder, k=kind: calls.append((k, name))
        )
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluation.build_evaluator(cfg, "coco_2017_val")
    evaluation.build_evaluator(cfg, "lvis_v1_val")
    assert calls == [("coco", "coco_2017_val"), ("lvis", "lvis_v1_val")]
    assert isinstance(evaluation.build_evaluator(cfg, "voc_2007_test"), PascalVOCDetectionEvaluator)


def test_unsupported_evaluator_type_is_named():
    with pytest.raises(NotImplementedError, match="evaluator_type 'cityscapes_instance'"):
        evaluation.build_evaluator(get_cfg(), "cityscapes_fine_instance_seg_val")


def _ground_truth_as_predictions(evaluator, records: list[dict], masks: bool) -> dict:
    """Feed ``evaluator`` the dataset's own boxes (and polygon masks) as score-1 detections."""
    evaluator.reset()
    for record in records:
        height, width = record["height"], record["width"]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in record["annotations"]]
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.ones(len(boxes))
        instances.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
        if masks:
            bitmasks = [polygons_to_bitmask(a["segmentation"], height, width) for a in record["annotations"]]
            instances.pred_masks = torch.from_numpy(np.stack(bitmasks))
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
    return evaluator.evaluate()


def test_lvis_evaluator_scores_the_ground_truth_100(tmp_path):
    root = write_tiny_lvis_dataset(tmp_path / "datasets", num_images=3)
    name = "soco_test_tiny_lvis_v1_val"
    register_lvis_instances(
        name, get_lvis_instances_meta("lvis_v1"), str(root / "lvis" / "lvis_v1_val.json"), f"{root}/coco/"
    )
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    evaluator = evaluation.build_evaluator(cfg, name)  # the real LVISEvaluator, on numpy >= 1.24
    assert isinstance(evaluator, LVISEvaluator)
    results = _ground_truth_as_predictions(evaluator, DatasetCatalog.get(name), masks=True)
    for task in ("bbox", "segm"):
        assert results[task]["AP"] == pytest.approx(100.0), results
        assert results[task]["APf"] == pytest.approx(100.0), "box and ball are frequent categories"
        assert results[task]["APr"] == -100.0, "no rare category has ground truth: LVIS reports -1"
    assert (tmp_path / "output" / "inference" / "lvis_instances_results.json").is_file()


def test_voc_evaluator_scores_the_ground_truth_100(tmp_path):
    root = write_tiny_voc_dataset(tmp_path / "datasets", num_images=3)
    name = "soco_test_tiny_voc_2007_test"
    register_pascal_voc(name, str(root / "VOC2007"), "test", 2007)
    MetadataCatalog.get(name).evaluator_type = "pascal_voc"
    evaluator = evaluation.build_evaluator(get_cfg(), name)
    assert isinstance(evaluator, PascalVOCDetectionEvaluator)
    results = _ground_truth_as_predictions(evaluator, DatasetCatalog.get(name), masks=False)
    assert results["bbox"] == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0}), results
