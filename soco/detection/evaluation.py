"""Evaluator per dataset, chosen from the dataset's ``evaluator_type`` metadata."""

from __future__ import annotations

import os
from collections.abc import Callable

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    LVISEvaluator,
    PascalVOCDetectionEvaluator,
)

from .lvis_compat import patch_lvis_numpy_aliases


def _lvis_evaluator(dataset_name: str, output_folder: str) -> LVISEvaluator:
    """Detectron2's ``LVISEvaluator``, after fixing the ``lvis`` package for numpy >= 1.24."""
    patch_lvis_numpy_aliases()
    return LVISEvaluator(dataset_name, output_dir=output_folder)


# evaluator_type (set by each dataset's registration) -> builder(dataset_name, output_folder).
EVALUATOR_BUILDERS: dict[str, Callable[[str, str], DatasetEvaluator]] = {
    "coco": lambda name, folder: COCOEvaluator(name, output_dir=folder),
    "lvis": _lvis_evaluator,
    "pascal_voc": lambda name, folder: PascalVOCDetectionEvaluator(name),
}


def build_evaluator(cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> DatasetEvaluator:
    """The evaluator matching ``MetadataCatalog.get(dataset_name).evaluator_type``.

    Predictions and result files go to ``output_folder`` (default ``OUTPUT_DIR/inference``).
    """
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type not in EVALUATOR_BUILDERS:
        raise NotImplementedError(
            f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; "
            f"supported: {sorted(EVALUATOR_BUILDERS)}"
        )
    folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
    return EVALUATOR_BUILDERS[evaluator_type](dataset_name, folder)
