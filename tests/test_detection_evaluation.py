"""The evaluator follows the dataset's evaluator_type."""

import pytest
from detectron2.config import get_cfg
from detectron2.evaluation import PascalVOCDetectionEvaluator

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
