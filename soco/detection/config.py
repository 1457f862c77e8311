"""Fine-tuning configuration: Detectron2's config, soco's fine-tuning keys, the datasets of train_net."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from soco.data.datasets import (
    check_num_classes,
    log_classes_without_boxes,
    register_coco_format_datasets,
    registered_box_counts,
)


def add_transfer_config(cfg: CfgNode) -> None:
    """soco's fine-tuning keys on top of Detectron2's (files that set none of them load unchanged)."""
    # Parts kept at their loaded weights, no gradient and BN frozen (a "detection probe"): any of
    # "backbone" (stem, res2-res5), "fpn", "box_head"; empty: fine-tune everything.
    cfg.MODEL.FREEZE_PARTS = []
    # Unpickle any Python object in MODEL.WEIGHTS (and resumed checkpoints). False: .pkl files may hold only
    # numpy arrays and torch files only tensors, so a crafted file cannot run code; trusted files only.
    cfg.MODEL.TRUST_PICKLE = False
    # Training batches whose average sets the BN statistics of frozen parts MODEL.WEIGHTS does not hold
    # (random init: mean 0 / var 1 otherwise), before they are frozen; 0 refuses to freeze such parts.
    cfg.MODEL.FREEZE_CALIBRATION_ITERS = 20


def load_transfer_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 defaults and soco's keys, then a ``detectron2_configs/`` file, then the overrides."""
    cfg = get_cfg()
    add_transfer_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def setup_transfer(args: argparse.Namespace) -> CfgNode:
    """Register ``--register-coco`` datasets, build the frozen config, run ``default_setup`` (which seeds
    torch, numpy and random with ``SEED`` + rank when ``SEED`` >= 0) and log empty classes of the datasets."""
    box_counts = registered_box_counts(register_coco_format_datasets(args.register_coco))
    cfg = load_transfer_config(args.config_file, args.opts)
    check_num_classes(cfg, box_counts)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soco")
    log_classes_without_boxes(box_counts)
    return cfg
