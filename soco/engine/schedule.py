"""Turn a config's epoch-based, batch-relative schedule into explicit iterations and learning rate."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from detectron2.config import CfgNode

#: Schedule keys whose explicit setting (in the config files or on the command line) wins over epochs.
ITERATION_KEYS = ("SOLVER.MAX_ITER", "SOLVER.WARMUP_ITERS")


def _leaf_keys(tree: dict, prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def explicit_keys(config_file: str, opts: list[str]) -> set[str]:
    """Full keys (``SOLVER.MAX_ITER``...) set by ``config_file``, its ``_BASE_`` chain, or ``opts``."""
    loaded = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True)
    return set(_leaf_keys(loaded)) | {str(key) for key in opts[0::2]}


def resolve_schedule(cfg: CfgNode, num_images: int | None, explicit: Collection[str] = ()) -> CfgNode:
    """A copy of ``cfg`` with the schedule made explicit for a corpus of ``num_images`` images.

    ``num_images`` may be None when the config does not use epochs. ``explicit`` holds the keys the user set
    (see :func:`explicit_keys`); an explicit ``SOLVER.MAX_ITER`` or ``SOLVER.WARMUP_ITERS`` is kept.

    * ``SOLVER.EPOCHS > 0``: ``MAX_ITER`` becomes epochs x (num_images // IMS_PER_BATCH) (the last
      incomplete batch of each epoch is dropped, as in the original) and ``WARMUP_ITERS`` becomes
      WARMUP_EPOCHS x the same, then ``EPOCHS`` and ``WARMUP_EPOCHS`` are set to 0. When ``MAX_ITER`` is
      explicit, the epoch count gives way: the run has ``MAX_ITER`` iterations and, unless ``WARMUP_ITERS``
      is explicit too, the warm-up keeps its share of the schedule (WARMUP_EPOCHS / EPOCHS of it).
    * ``SOLVER.LR_REFERENCE_BATCH > 0``: ``BASE_LR`` becomes BASE_LR x IMS_PER_BATCH / LR_REFERENCE_BATCH,
      then ``LR_REFERENCE_BATCH`` is set to 0.

    Resolving twice changes nothing, so the saved ``config.yaml`` of a run is a complete, explicit config
    (:func:`soco.engine.pretrain.run_pretraining` logs :func:`describe_schedule` once the loggers exist).
    ``SOLVER.ITERS_PER_EPOCH`` records the epoch length (0 when unknown).
    """
    cfg = cfg.clone()
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    solver = cfg.SOLVER
    batch = solver.IMS_PER_BATCH
    if solver.EPOCHS > 0:
        if num_images is None:
            raise ValueError("SOLVER.EPOCHS > 0 needs the number of images of the corpus")
        iters_per_epoch = num_images // batch
        if iters_per_epoch == 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={batch} is larger than the {num_images} images of the corpus: "
                "not even one iteration per epoch"
            )
        solver.ITERS_PER_EPOCH = iters_per_epoch
        if "SOLVER.WARMUP_ITERS" not in explicit:
            if "SOLVER.MAX_ITER" in explicit:
                solver.WARMUP_ITERS = round(solver.MAX_ITER * solver.WARMUP_EPOCHS / solver.EPOCHS)
            else:
                solver.WARMUP_ITERS = solver.WARMUP_EPOCHS * iters_per_epoch
        if "SOLVER.MAX_ITER" not in explicit:
            solver.MAX_ITER = solver.EPOCHS * iters_per_epoch
        solver.EPOCHS = 0
        solver.WARMUP_EPOCHS = 0
    if solver.LR_REFERENCE_BATCH > 0:
        solver.BASE_LR = solver.BASE_LR * batch / solver.LR_REFERENCE_BATCH
        solver.LR_REFERENCE_BATCH = 0
    if solver.WARMUP_ITERS >= solver.MAX_ITER > 0 and solver.RESCALE_INTERVAL:
        raise ValueError(
            f"SOLVER.WARMUP_ITERS={solver.WARMUP_ITERS} must be smaller than "
            f"SOLVER.MAX_ITER={solver.MAX_ITER} "
            "(the cosine phase after warm-up would be empty); lower WARMUP_ITERS/WARMUP_EPOCHS"
        )
    if was_frozen:
        cfg.freeze()
    return cfg


def describe_schedule(requested: CfgNode, resolved: CfgNode, explicit: Collection[str] = ()) -> str:
    """One log line: the resolved schedule and, where an explicit iteration count replaced epochs, why."""
    solver = resolved.SOLVER
    line = (
        f"resolved schedule: MAX_ITER {solver.MAX_ITER}, WARMUP_ITERS {solver.WARMUP_ITERS}, "
        f"BASE_LR {solver.BASE_LR:g}, {solver.ITERS_PER_EPOCH} iterations per epoch"
    )
    epochs = requested.SOLVER.EPOCHS
    if epochs > 0 and "SOLVER.MAX_ITER" in explicit:
        line += (
            f"; SOLVER.MAX_ITER={solver.MAX_ITER} was set explicitly and replaces SOLVER.EPOCHS={epochs} "
            f"({epochs * solver.ITERS_PER_EPOCH} iterations)"
        )
        if "SOLVER.WARMUP_ITERS" not in explicit:
            line += f"; the warm-up keeps its share: {requested.SOLVER.WARMUP_EPOCHS} of {epochs} epochs"
    return line
