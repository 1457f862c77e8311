"""Entry point of ``tools/pretrain_net.py``: config set-up and the per-process main function."""

from __future__ import annotations

import argparse
import logging

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

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
    # The corpus is only counted when the schedule is given in epochs (a full ImageNet walk takes a while).
    cfg = resolve_schedule(cfg, count_images(cfg) if cfg.SOLVER.EPOCHS > 0 else None)
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> PretrainTrainer:
    """Pretrain in this process (one of ``launch``'s workers); returns the finished trainer."""
    cfg = setup_pretrain_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    # default_setup only configures the "detectron2" and "fvcore" loggers; soco's own go to the same log.txt.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soco")
    logging.getLogger("soco").info(
        "resolved schedule: MAX_ITER %d, WARMUP_ITERS %d, BASE_LR %g, %d iterations per epoch",
        cfg.SOLVER.MAX_ITER,
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.ITERS_PER_EPOCH,
    )
    trainer = PretrainTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer
