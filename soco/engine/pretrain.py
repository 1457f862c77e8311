"""Pretraining in one process: the config set-up, and the function ``tools/pretrain_net.py`` launches."""

from __future__ import annotations

import argparse
import logging

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from soco.config import add_soco_config
from soco.data import register_coco_format_datasets
from soco.data.build import count_images

from .distributed import share_cpu_threads
from .schedule import describe_schedule, key_sources, resolve_schedule
from .trainer import PretrainTrainer


def load_pretrain_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """A pretraining config (Detectron2's keys plus soco's) from ``config_file`` and command-line ``opts``.

    Old key names (e.g. ``SOCO.DATA.IMAGE_ROOT``) fail here with an error naming the new one.
    """
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    return cfg


def _resolve(cfg: CfgNode, sources: dict[str, int], world_size: int) -> CfgNode:
    # The corpus is only counted when the schedule is given in epochs (a full ImageNet walk takes a while).
    cfg = resolve_schedule(cfg, count_images(cfg) if cfg.SOLVER.EPOCHS > 0 else None, sources, world_size)
    cfg.freeze()
    return cfg


def setup_pretrain_cfg(config_file: str, opts: list[str], world_size: int | None = None) -> CfgNode:
    """Load a pretraining config, apply overrides, resolve its batch and schedule (world-size rules, epochs,
    lr scaling) for ``world_size`` processes (default: this process group's), freeze it.
    """
    world_size = comm.get_world_size() if world_size is None else world_size
    return _resolve(load_pretrain_cfg(config_file, opts), key_sources(config_file, opts), world_size)


def run_pretraining(args: argparse.Namespace) -> PretrainTrainer:
    """Pretrain in this process (one of ``launch``'s workers); returns the finished trainer.

    ``args.register_coco`` (``--register-coco``, optional): COCO-format datasets registered in this
    process before the trainer is built, for ``PRETRAIN.PROBES.BOX_TRAIN`` / ``BOX_TEST``.
    """
    register_coco_format_datasets(getattr(args, "register_coco", None))
    requested = load_pretrain_cfg(args.config_file, args.opts)
    sources = key_sources(args.config_file, args.opts)
    world_size = comm.get_world_size()
    cfg = _resolve(requested, sources, world_size)
    default_setup(cfg, args)
    # default_setup only configures the "detectron2" and "fvcore" loggers; soco's own go to the same log.txt.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soco")
    share_cpu_threads(torch.device(cfg.MODEL.DEVICE))
    logging.getLogger("soco").info(describe_schedule(requested, cfg, sources, world_size))
    trainer = PretrainTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer
