"""Fine-tuning pretrained backbones in Detectron2: the C4 extra-norm head, datasets, evaluators, trainer.

Importing the package registers ``Res5ROIHeadsExtraNorm`` in Detectron2's ``ROI_HEADS_REGISTRY``.
"""

from .config import load_transfer_config, setup_transfer
from .datasets import add_register_coco_argument, register_coco_format_dataset, register_coco_format_datasets
from .evaluation import build_evaluator
from .roi_heads import Res5ROIHeadsExtraNorm
from .trainer import TransferTrainer, evaluate_weights, run_transfer

__all__ = [
    "Res5ROIHeadsExtraNorm",
    "add_register_coco_argument",
    "TransferTrainer",
    "build_evaluator",
    "evaluate_weights",
    "load_transfer_config",
    "register_coco_format_dataset",
    "register_coco_format_datasets",
    "run_transfer",
    "setup_transfer",
]
