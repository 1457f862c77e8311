"""Fine-tuning configuration: Detectron2's config plus the command-line datasets of train_net."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup

from .datasets import check_num_classes, register_coco_format_datasets


def load_transfer_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 defaults, then a bundled ``detectron2_configs/`` file, then ``KEY VALUE`` overrides."""
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def setup_transfer(args: argparse.Namespace) -> CfgNode:
    """Register ``--register-coco`` datasets, build the frozen config and run ``default_setup``."""
    user_datasets = register_coco_format_datasets(args.register_coco)
    cfg = load_transfer_config(args.config_file, args.opts)
    check_num_classes(cfg, user_datasets)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
