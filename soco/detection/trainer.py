"""Fine-tuning trainer: Detectron2's ``DefaultTrainer`` with evaluators chosen per dataset."""

from __future__ import annotations

import argparse
import functools
import json
import weakref
from pathlib import Path

from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator, verify_results
from detectron2.utils import comm
from torch import nn

from soco.checkpoint import SafeDetectionCheckpointer

from .config import setup_transfer
from .evaluation import build_evaluator
from .freeze import (
    calibrate_norms,
    check_parts,
    freeze_parts,
    frozen_part_names,
    held_parts,
    needs_calibration,
)

PARAMETERS_FILE = "model_parameters.json"  # OUTPUT_DIR file: trainable / frozen parameters, frozen parts


class TransferTrainer(DefaultTrainer):
    """``DefaultTrainer`` that freezes ``MODEL.FREEZE_PARTS``, evaluates COCO, LVIS and Pascal VOC
    datasets (see ``evaluation.py``) and reads ``MODEL.WEIGHTS`` with :class:`SafeDetectionCheckpointer`
    (no code runs from a ``.pkl`` / ``.pth`` unless ``MODEL.TRUST_PICKLE``)."""

    def __init__(self, cfg: CfgNode):
        super().__init__(cfg)
        # DefaultTrainer builds a plain DetectionCheckpointer (unrestricted pickle.load of .pkl files);
        # loading and the periodic checkpoints use this one instead.
        self.checkpointer = SafeDetectionCheckpointer(
            self.model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.TRUST_PICKLE, trainer=weakref.proxy(self)
        )
        for hook in self._hooks:
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer
        if comm.is_main_process():  # what the transfer benchmark reports per run
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            counts = {
                "trainable_parameters": trainable,
                "frozen_parameters": sum(p.numel() for p in self.model.parameters()) - trainable,
                "frozen_parts": frozen_part_names(cfg),
            }
            (Path(cfg.OUTPUT_DIR) / PARAMETERS_FILE).write_text(json.dumps(counts, indent=1) + "\n")

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        model = super().build_model(cfg)
        parts = list(cfg.MODEL.FREEZE_PARTS)
        check_parts(model, parts)
        held = held_parts(cfg.MODEL.WEIGHTS, cfg.MODEL.TRUST_PICKLE) if parts else []
        random_parts = [part for part in parts if part not in held]
        if needs_calibration(model, random_parts, cfg, cfg.MODEL.WEIGHTS):
            if cfg.MODEL.WEIGHTS:  # the calibrated parts see the features of the loaded ones
                SafeDetectionCheckpointer(model, trust_pickle=cfg.MODEL.TRUST_PICKLE).load(cfg.MODEL.WEIGHTS)
            batches = functools.partial(cls.build_train_loader, cfg)
            calibrate_norms(model, random_parts, batches, cfg.MODEL.FREEZE_CALIBRATION_ITERS)
        freeze_parts(model, parts)
        return model

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return build_evaluator(cfg, dataset_name, output_folder)


def evaluate_weights(cfg: CfgNode, resume: bool = False) -> dict:
    """Evaluate ``MODEL.WEIGHTS`` (or, with ``resume``, the last checkpoint in ``OUTPUT_DIR``)."""
    model = TransferTrainer.build_model(cfg)
    checkpointer = SafeDetectionCheckpointer(model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.TRUST_PICKLE)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
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
