"""Entry point of ``tools/pretrain_net.py``: config set-up and the per-process main function."""

from __future__ import annotations

import argparse

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup

import soco.modeling  # noqa: F401  (registers the meta-architectures and view generators)
from soco.config import add_soco_config
from soco.data.build import count_images

from .schedule import resolve_schedule
from .trainer import PretrainTrainer


def setup_pretrain_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """Load a pretraining config (with soco's keys), apply overrides, resolve its schedule, freeze it."""
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    cfg = resolve_schedule(cfg, count_images(cfg))
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> PretrainTrainer:
    """Pretrain in this process (one of ``launch``'s workers); returns the finished trainer."""
    cfg = setup_pretrain_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    trainer = PretrainTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer
