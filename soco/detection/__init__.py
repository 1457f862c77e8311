"""Fine-tuning pretrained backbones in Detectron2: the C4 extra-norm head, evaluators, frozen parts,
trainer; the multi-seed transfer benchmark is ``soco.detection.benchmark``.

Importing the package registers ``Res5ROIHeadsExtraNorm`` in Detectron2's ``ROI_HEADS_REGISTRY``.
"""

from .config import add_transfer_config, load_transfer_config, setup_transfer
from .evaluation import build_evaluator
from .freeze import freeze_parts
from .roi_heads import Res5ROIHeadsExtraNorm
from .trainer import TransferTrainer, evaluate_weights, run_transfer
from .transfer_check import check_transfer_with_config

__all__ = [
    "Res5ROIHeadsExtraNorm",
    "TransferTrainer",
    "add_transfer_config",
    "build_evaluator",
    "check_transfer_with_config",
    "evaluate_weights",
    "freeze_parts",
    "load_transfer_config",
    "run_transfer",
    "setup_transfer",
]
