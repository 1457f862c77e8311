"""Turn a config's epoch-based, batch-relative schedule into explicit iterations and learning rate."""

from __future__ import annotations

from detectron2.config import CfgNode


def resolve_schedule(cfg: CfgNode, num_images: int | None) -> CfgNode:
    """A copy of ``cfg`` with the schedule made explicit for a corpus of ``num_images`` images.

    ``num_images`` may be None when the config does not use epochs.

    * ``SOLVER.EPOCHS > 0``: ``MAX_ITER`` and ``WARMUP_ITERS`` become epochs x (num_images // IMS_PER_BATCH)
      (the last incomplete batch of each epoch is dropped, as in the original), then ``EPOCHS`` is set to 0.
    * ``SOLVER.LR_REFERENCE_BATCH > 0``: ``BASE_LR`` becomes BASE_LR x IMS_PER_BATCH / LR_REFERENCE_BATCH,
      then ``LR_REFERENCE_BATCH`` is set to 0.

    Resolving twice changes nothing, so the saved ``config.yaml`` of a run is a complete, explicit config
    (``soco.engine.launch.main`` logs the result once the loggers exist).
    ``SOLVER.ITERS_PER_EPOCH`` records the epoch length (0 when unknown).
    """
    cfg = cfg.clone()
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    batch = cfg.SOLVER.IMS_PER_BATCH
    if cfg.SOLVER.EPOCHS > 0:
        if num_images is None:
            raise ValueError("SOLVER.EPOCHS > 0 needs the number of images of the corpus")
        iters_per_epoch = num_images // batch
        if iters_per_epoch == 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={batch} is larger than the {num_images} images of the corpus: "
                "not even one iteration per epoch"
            )
        cfg.SOLVER.ITERS_PER_EPOCH = iters_per_epoch
        cfg.SOLVER.MAX_ITER = cfg.SOLVER.EPOCHS * iters_per_epoch
        cfg.SOLVER.WARMUP_ITERS = cfg.SOLVER.WARMUP_EPOCHS * iters_per_epoch
        cfg.SOLVER.EPOCHS = 0
        cfg.SOLVER.WARMUP_EPOCHS = 0
    if cfg.SOLVER.LR_REFERENCE_BATCH > 0:
        cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * batch / cfg.SOLVER.LR_REFERENCE_BATCH
        cfg.SOLVER.LR_REFERENCE_BATCH = 0
    if cfg.SOLVER.WARMUP_ITERS >= cfg.SOLVER.MAX_ITER > 0 and cfg.SOLVER.RESCALE_INTERVAL:
        raise ValueError(
            f"SOLVER.WARMUP_ITERS={cfg.SOLVER.WARMUP_ITERS} must be smaller than "
            f"SOLVER.MAX_ITER={cfg.SOLVER.MAX_ITER} "
            "(the cosine phase after warm-up would be empty); lower WARMUP_ITERS/WARMUP_EPOCHS"
        )
    if was_frozen:
        cfg.freeze()
    return cfg
