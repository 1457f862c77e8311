"""Linear classification in one process: set-up, data, classifier, trainer; what ``tools/train_linear.py``
launches (and the cluster job ``linear``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from soco.data.labeled_images import LabeledImages, list_labeled_images, match_classes

from ..distributed import share_cpu_threads
from ..schedule import describe_schedule, key_sources, resolve_schedule
from .config import load_linear_cfg
from .data import (
    CachedFeatures,
    build_feature_train_loader,
    build_image_train_loader,
    build_val_loader,
    evaluate_top_k,
    extract_features,
)
from .model import LinearClassifier, build_linear_classifier
from .trainer import LinearTrainer

logger = logging.getLogger("soco")

#: Written into OUTPUT_DIR by the main process after training: the final results and what produced them.
RESULTS_FILE = "linear_results.json"


def _num_classes(cfg: CfgNode, train: LabeledImages) -> int:
    found = len(train.classes)
    if cfg.LINEAR.NUM_CLASSES and cfg.LINEAR.NUM_CLASSES != found:
        raise ValueError(
            f"LINEAR.NUM_CLASSES={cfg.LINEAR.NUM_CLASSES} but {train.root} has {found} classes "
            "(set it to 0 to use the data's)"
        )
    return found


def resolve_linear_cfg(
    requested: CfgNode, num_train_images: int, sources: dict[str, int], world_size: int
) -> CfgNode:
    """The explicit, frozen config: the pretraining's world-size and epoch rules
    (:func:`soco.engine.schedule.resolve_schedule`), then the checkpoint period in iterations."""
    cfg = resolve_schedule(requested, num_train_images, sources, world_size)
    if cfg.SOLVER.ITERS_PER_EPOCH == 0:
        raise ValueError("linear classification is scheduled in epochs: set SOLVER.EPOCHS > 0")
    cfg.defrost()
    cfg.SOLVER.CHECKPOINT_PERIOD = requested.LINEAR.CHECKPOINT_PERIOD_EPOCHS * cfg.SOLVER.ITERS_PER_EPOCH
    cfg.freeze()
    return cfg


def _write_config(cfg: CfgNode) -> None:
    if comm.is_main_process():
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())


def _build_classifier(cfg: CfgNode, num_classes: int) -> LinearClassifier:
    # the same initial head (and random backbone, for LINEAR.RANDOM_INIT) in every process and every rerun
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.SEED)
        return build_linear_classifier(cfg, num_classes)


def run_linear(args: argparse.Namespace) -> LinearTrainer:
    """Train and evaluate a linear classifier in this process (one of ``launch``'s workers).

    The config is set up as the requested one (logged, seeded), the training images are listed (and, for
    ``cached_features``, their features extracted; unreadable images are left out and counted), then the
    schedule is resolved on that number of images and saved to ``OUTPUT_DIR/config.yaml``.
    """
    requested = load_linear_cfg(args.config_file, args.opts)
    sources = key_sources(args.config_file, args.opts)
    world_size = comm.get_world_size()
    default_setup(requested, args)
    setup_logger(requested.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="soco")
    share_cpu_threads(torch.device(requested.MODEL.DEVICE))
    train = list_labeled_images(requested.LINEAR.DATA.TRAIN)
    val = match_classes(train, list_labeled_images(requested.LINEAR.DATA.VAL))
    num_classes = _num_classes(requested, train)
    logger.info(
        "linear classification (%s protocol): %d training and %d validation images, %d classes",
        requested.LINEAR.PROTOCOL, len(train.images), len(val.images), num_classes,
    )  # fmt: skip
    model = _build_classifier(requested, num_classes)
    val_loader = build_val_loader(requested, val)
    if requested.LINEAR.PROTOCOL == "reference":
        num_train = len(train.images)
        cfg = resolve_linear_cfg(requested, num_train, sources, world_size)

        def build_loader(start_iter: int):
            return build_image_train_loader(cfg, train, start_iter)

        def evaluate() -> dict:
            return evaluate_top_k(model, val_loader, len(val.images))

    else:
        cached_train, cached_val, skipped = _cache_features(requested, model, train, val_loader)
        num_train = len(cached_train)
        cfg = resolve_linear_cfg(requested, num_train, sources, world_size)

        def build_loader(start_iter: int):
            return build_feature_train_loader(cfg, cached_train, start_iter)

        def evaluate() -> dict:
            batches = cached_val.batches(cfg.LINEAR.EVAL_BATCH_SIZE)
            return {**evaluate_top_k(model, batches, len(val.images)), "train_skipped": float(skipped)}

    _write_config(cfg)
    logger.info(describe_schedule(requested, cfg, sources, world_size))
    unused = num_train % cfg.SOLVER.IMS_PER_BATCH
    if unused:
        logger.info(
            "each epoch leaves out its last %d images (an incomplete batch; another draw every epoch)", unused
        )
    trainer = LinearTrainer(cfg, model, build_loader, evaluate)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    if comm.is_main_process() and trainer.preempted_at is None:  # a pre-empted run's results are not final
        _write_results(cfg, trainer)
    return trainer


def _cache_features(
    cfg: CfgNode, model: LinearClassifier, train: LabeledImages, val_loader
) -> tuple[CachedFeatures, CachedFeatures, int]:
    """Features of every training image (all processes gather them) and of this process's validation shard;
    the training images that could not be decoded are left out, and their number returned."""
    start = time.perf_counter()
    train_loader = build_val_loader(cfg, train)  # centre crops, no augmentation, contiguous shards
    cached_train = extract_features(model, train_loader, gather=True)
    decoded = cached_train.decoded()
    skipped = len(cached_train) - len(decoded)
    cached_val = extract_features(model, val_loader, gather=False)
    logger.info(
        "cached_features: extracted %d training (%d unreadable, left out) and %d validation features of "
        "this process in %.1f s; this is not the reference protocol (no augmentation)",
        len(cached_train), skipped, len(cached_val), time.perf_counter() - start,
    )  # fmt: skip
    if len(decoded) == 0:
        raise RuntimeError(f"none of the {len(cached_train)} training images could be decoded")
    return decoded, cached_val, skipped


def _write_results(cfg: CfgNode, trainer: LinearTrainer) -> None:
    results = getattr(trainer, "last_results", None)
    if results is None:  # stopped before the end
        return
    record = {
        "protocol": cfg.LINEAR.PROTOCOL,
        "weights": cfg.MODEL.WEIGHTS or "random init",
        "epochs": cfg.SOLVER.MAX_ITER / cfg.SOLVER.ITERS_PER_EPOCH,
        "iterations": cfg.SOLVER.MAX_ITER,
        "global_batch": cfg.SOLVER.IMS_PER_BATCH,
        "base_lr": cfg.SOLVER.BASE_LR,
        **{key: float(np.asarray(value)) for key, value in results.items()},
    }
    path = os.path.join(cfg.OUTPUT_DIR, RESULTS_FILE)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    logger.info("linear classification results written to %s", path)
