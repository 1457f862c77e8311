"""Fine-tuning trainer: Detectron2's ``DefaultTrainer`` with evaluators chosen per dataset."""

from __future__ import annotations

import argparse

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluator, verify_results
from detectron2.utils import comm
from torch import nn

from .config import setup_transfer
from .evaluation import build_evaluator
from .freeze import freeze_parts


class TransferTrainer(DefaultTrainer):
    """``DefaultTrainer`` that freezes ``MODEL.FREEZE_PARTS`` and evaluates COCO, LVIS and Pascal VOC
    datasets (see ``evaluation.py``)."""

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        model = super().build_model(cfg)
        freeze_parts(model, cfg.MODEL.FREEZE_PARTS)
        return model

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return build_evaluator(cfg, dataset_name, output_folder)


def evaluate_weights(cfg: CfgNode, resume: bool = False) -> dict:
    """Evaluate ``MODEL.WEIGHTS`` (or, with ``resume``, the last checkpoint in ``OUTPUT_DIR``)."""
    model = TransferTrainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    results = TransferTrainer.test(cfg, model)
    if comm.is_main_process():
        verify_results(cfg, results)
    return results


def run_transfer(args: argparse.Namespace):
    """``tools/train_net.py``'s main in one process of a (multi-process) job: fine-tune, or with
    ``args.eval_only`` evaluate; ``args.resume`` continues from ``OUTPUT_DIR/last_checkpoint``."""
    cfg = setup_transfer(args)
    if args.eval_only:
        return evaluate_weights(cfg, resume=args.resume)
    trainer = TransferTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
