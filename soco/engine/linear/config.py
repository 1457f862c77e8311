"""Config of the linear classification protocol: Detectron2's and soco's keys plus ``LINEAR.*``."""

from __future__ import annotations

from detectron2.config import CfgNode, get_cfg
from detectron2.config import CfgNode as CN

from soco.config import add_soco_config

#: Values of ``LINEAR.PROTOCOL``.
PROTOCOLS = ("reference", "cached_features")
#: Values of ``LINEAR.LR_SCHEDULE``.
LR_SCHEDULES = ("step", "cosine")


def add_linear_config(cfg: CN) -> None:
    """Add the ``LINEAR.*`` keys. The optimizer, batch and epochs are soco's ``SOLVER.*`` keys (SGD,
    ``IMS_PER_BATCH`` or ``IMS_PER_GPU``, ``EPOCHS``), the backbone is ``MODEL.RESNETS.*`` with
    ``MODEL.WEIGHTS``, the normalisation the pretraining's ``PRETRAIN.DATA.PIXEL_MEAN`` / ``PIXEL_STD``."""
    cfg.LINEAR = CN()
    # "reference": frozen backbone on augmented images every step (the published protocol);
    # "cached_features": res5 features of centre crops extracted once, the head trained on them (fast, not
    # the reference protocol, reported under its own name).
    cfg.LINEAR.PROTOCOL = "reference"
    # Train on a randomly initialised backbone (a baseline) when MODEL.WEIGHTS is empty; without it, an
    # empty MODEL.WEIGHTS is an error.
    cfg.LINEAR.RANDOM_INIT = False
    # Classes of the head (0: the number of classes of the training images; otherwise it must match them).
    cfg.LINEAR.NUM_CLASSES = 0
    # Std of the normal initialisation of the head's weight (its bias starts at 0).
    cfg.LINEAR.INIT_STD = 0.01
    # Learning-rate schedule, set once per epoch: "step" (x SOLVER.GAMMA at each of STEP_EPOCHS) or
    # "cosine" (from BASE_LR to 0 over the epochs).
    cfg.LINEAR.LR_SCHEDULE = "step"
    cfg.LINEAR.STEP_EPOCHS = (60, 80)
    # Evaluate top-1 / top-5 every EVAL_PERIOD_EPOCHS epochs (0: only after the last iteration).
    cfg.LINEAR.EVAL_PERIOD_EPOCHS = 1
    # Save a checkpoint every CHECKPOINT_PERIOD_EPOCHS epochs (SOLVER.CHECKPOINT_PERIOD is derived from it).
    cfg.LINEAR.CHECKPOINT_PERIOD_EPOCHS = 1
    # Images per forward pass and process when evaluating or extracting features.
    cfg.LINEAR.EVAL_BATCH_SIZE = 64
    cfg.LINEAR.DATA = CN()
    # Labelled training / validation images: an ImageFolder tree, a train.zip / val.zip (class folders at
    # the root, or integer labels in the <stem>_map.txt beside it) or a map file.
    cfg.LINEAR.DATA.TRAIN = ""
    cfg.LINEAR.DATA.VAL = ""
    # Training view: RandomResizedCrop(CROP_SIZE, scale=CROP_SCALE) + horizontal flip.
    cfg.LINEAR.DATA.CROP_SIZE = 224
    cfg.LINEAR.DATA.CROP_SCALE = (0.08, 1.0)
    # Evaluation view (and the cached features' view): short side resized to RESIZE_SIZE, centre CROP_SIZE.
    cfg.LINEAR.DATA.RESIZE_SIZE = 256


def load_linear_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """A linear-classification config from ``config_file`` (with its ``_BASE_`` chain) and ``opts``."""
    cfg = get_cfg()
    add_soco_config(cfg)
    add_linear_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    check_linear_cfg(cfg)
    return cfg


def check_linear_cfg(cfg: CfgNode) -> None:
    """Errors naming the key for values the protocol cannot run with."""
    linear = cfg.LINEAR
    if linear.PROTOCOL not in PROTOCOLS:
        raise ValueError(f"LINEAR.PROTOCOL must be one of {PROTOCOLS}, got {linear.PROTOCOL!r}")
    if linear.LR_SCHEDULE not in LR_SCHEDULES:
        raise ValueError(f"LINEAR.LR_SCHEDULE must be one of {LR_SCHEDULES}, got {linear.LR_SCHEDULE!r}")
    for key in ("TRAIN", "VAL"):
        if not linear.DATA[key]:
            raise ValueError(f"LINEAR.DATA.{key} is empty: set it to an image folder, a .zip or a map file")
    if not cfg.MODEL.WEIGHTS and not linear.RANDOM_INIT:
        raise ValueError(
            "MODEL.WEIGHTS is empty: give the pretrained checkpoint (ours, a converted .pkl or an official "
            "release), or set LINEAR.RANDOM_INIT True for the random-initialisation baseline"
        )
    if cfg.MODEL.WEIGHTS and linear.RANDOM_INIT:
        raise ValueError(f"LINEAR.RANDOM_INIT is True but MODEL.WEIGHTS={cfg.MODEL.WEIGHTS}: choose one")
    if linear.CHECKPOINT_PERIOD_EPOCHS < 1 or linear.EVAL_PERIOD_EPOCHS < 0:
        raise ValueError(
            f"LINEAR.CHECKPOINT_PERIOD_EPOCHS={linear.CHECKPOINT_PERIOD_EPOCHS} must be >= 1 and "
            f"LINEAR.EVAL_PERIOD_EPOCHS={linear.EVAL_PERIOD_EPOCHS} >= 0 (0: evaluate after training only)"
        )
    if "res5" not in cfg.MODEL.RESNETS.OUT_FEATURES:
        raise ValueError("MODEL.RESNETS.OUT_FEATURES must contain res5 (the head reads pooled res5)")
    if cfg.SOLVER.CHECKPOINT_PERIOD != get_cfg().SOLVER.CHECKPOINT_PERIOD:
        raise ValueError(
            "SOLVER.CHECKPOINT_PERIOD is derived from LINEAR.CHECKPOINT_PERIOD_EPOCHS in linear "
            "classification: set that instead"
        )
