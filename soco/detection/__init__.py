"""Fine-tuning pretrained backbones in Detectron2: the C4 extra-norm head, datasets, evaluators, frozen
parts, trainer; the multi-seed transfer benchmark is ``soco.detection.benchmark``.

Importing the package registers ``Res5ROIHeadsExtraNorm`` in Detectron2's ``ROI_HEADS_REGISTRY``.
"""

from .config import add_transfer_config, load_transfer_config, setup_transfer
from .datasets import add_register_coco_argument, register_coco_format_dataset, register_coco_format_datasets
from .evaluation import build_evaluator
from .freeze import freeze_parts
from .roi_heads import Res5ROIHeadsExtraNorm
from .trainer import TransferTrainer, evaluate_weights, run_transfer

__all__ = [
    "Res5ROIHeadsExtraNorm",
    "add_register_coco_argument",
    "TransferTrainer",
    "add_transfer_config",
    "build_evaluator",
    "evaluate_weights",
    "freeze_parts",
    "load_transfer_config",
    "register_coco_format_dataset",
    "register_coco_format_datasets",
    "run_transfer",
    "setup_transfer",
]
