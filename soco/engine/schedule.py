"""Turn a config's epoch-based, batch-relative schedule into explicit iterations and learning rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectron2.config import CfgNode

from soco.config import leaf_keys

#: Where a key's value comes from, in increasing precedence (see :func:`key_sources`).
DEFAULT, CONFIG_FILE, COMMAND_LINE = 0, 1, 2


def key_sources(config_file: str, opts: list[str]) -> dict[str, int]:
    """``{full key: CONFIG_FILE or COMMAND_LINE}`` for every key set by ``config_file`` (and its ``_BASE_``
    chain) or by the command-line ``opts``; keys absent from the result keep their default.
    """
    loaded = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True)
    sources = dict.fromkeys(leaf_keys(loaded), CONFIG_FILE)
    sources.update(dict.fromkeys((str(key) for key in opts[0::2]), COMMAND_LINE))
    return sources


def _iterations_win(sources: Mapping[str, int], iterations_key: str, epochs_key: str) -> bool:
    level = sources.get(iterations_key, DEFAULT)
    return level > DEFAULT and level >= sources.get(epochs_key, DEFAULT)


def iteration_counts_kept(sources: Mapping[str, int]) -> tuple[bool, bool]:
    """Whether ``SOLVER.MAX_ITER`` and ``SOLVER.WARMUP_ITERS`` win over their epoch counts: each does when
    it was set at the level its epoch count was set at, or at a higher one (command line over config file).
    """
    return (
        _iterations_win(sources, "SOLVER.MAX_ITER", "SOLVER.EPOCHS"),
        _iterations_win(sources, "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_EPOCHS"),
    )


#: The keys counted in iterations. When a world-size rule multiplies the global batch by r, each one in
#: effect is divided by r (rounded), so that the run sees the same images up to every event: the schedule,
#: the checkpoints, the probes and SwAV's phases. Keys a config lacks are passed over.
ITERATION_KEYS = (
    "SOLVER.MAX_ITER",
    "SOLVER.WARMUP_ITERS",
    "SOLVER.STEPS",
    "SOLVER.CHECKPOINT_PERIOD",
    "PRETRAIN.EVAL_PERIOD",
    "SWAV.QUEUE_START_ITER",
    "SWAV.FREEZE_PROTOTYPES_ITERS",
)
#: Periods: a positive one stays at least 1 (0 means "off" and stays 0).
_PERIOD_KEYS = ("SOLVER.CHECKPOINT_PERIOD", "PRETRAIN.EVAL_PERIOD")

#: (key, old value, new value) of one change a world-size rule made.
Change = tuple[str, Any, Any]


def _node_and_name(cfg: CfgNode, key: str) -> tuple[CfgNode | None, str]:
    *path, name = key.split(".")
    node = cfg
    for part in path:
        node = node.get(part)
        if node is None:
            return None, name
    return (node, name) if name in node else (None, name)


def _divided(key: str, value: Any, ratio: float) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(int(round(v / ratio)) for v in value)
    scaled = int(round(value / ratio))
    return max(1, scaled) if key in _PERIOD_KEYS and value > 0 else scaled


def scale_to_world_size(cfg: CfgNode, world_size: int, sources: Mapping[str, int]) -> list[Change]:
    """In place: the one world-size rule, before epochs and the linear lr rule see ``IMS_PER_BATCH``;
    returns ``[(key, old, new), ...]`` for every key it changed (:func:`describe_world_size_changes`).

    The global batch comes from ``SOLVER.IMS_PER_GPU > 0`` (IMS_PER_GPU x world size) or from
    ``SOLVER.REFERENCE_WORLD_SIZE > 0`` (Detectron2's ``DefaultTrainer.auto_scale_workers``: the config's
    IMS_PER_BATCH is meant for that many processes, the per-process batch stays); at most one of them.
    When it changes the batch by a factor r, both do the same to the rest: every key of
    :data:`ITERATION_KEYS` in effect is divided by r (``MAX_ITER`` and ``WARMUP_ITERS`` only when they are
    not computed from epochs later, see :func:`iteration_counts_kept`), and ``BASE_LR`` is multiplied by r
    when ``LR_REFERENCE_BATCH`` is 0 (otherwise the linear rule derives it from the new batch).
    """
    solver = cfg.SOLVER
    old_batch = solver.IMS_PER_BATCH
    per_gpu = solver.get("IMS_PER_GPU", 0)  # soco's keys: a plain Detectron2 config lacks them
    lr_reference_batch, epochs = solver.get("LR_REFERENCE_BATCH", 0), solver.get("EPOCHS", 0)
    changes: list[Change] = []
    if per_gpu > 0:
        if solver.REFERENCE_WORLD_SIZE > 0:
            raise ValueError(
                f"SOLVER.IMS_PER_GPU={solver.IMS_PER_GPU} and SOLVER.REFERENCE_WORLD_SIZE="
                f"{solver.REFERENCE_WORLD_SIZE} are two rules for the batch size: set only one"
            )
        batch_level = sources.get("SOLVER.IMS_PER_BATCH", DEFAULT)
        per_gpu_level = sources.get("SOLVER.IMS_PER_GPU", DEFAULT)
        if batch_level > per_gpu_level or batch_level == per_gpu_level == COMMAND_LINE:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={solver.IMS_PER_BATCH} and SOLVER.IMS_PER_GPU={solver.IMS_PER_GPU} "
                "are both asked for: give the global batch or the per-GPU batch, not both"
            )
        new_batch = per_gpu * world_size
    else:
        reference = solver.REFERENCE_WORLD_SIZE
        if reference <= 0 or reference == world_size:
            return changes
        if (old_batch * world_size) % reference:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={old_batch} for SOLVER.REFERENCE_WORLD_SIZE={reference} "
                f"processes cannot be scaled to {world_size} processes (not a whole number of images each)"
            )
        new_batch = old_batch * world_size // reference
        solver.REFERENCE_WORLD_SIZE = world_size
        changes.append(("SOLVER.REFERENCE_WORLD_SIZE", reference, world_size))
    if new_batch == old_batch:
        return changes
    ratio = new_batch / old_batch
    solver.IMS_PER_BATCH = new_batch
    changes.insert(0, ("SOLVER.IMS_PER_BATCH", old_batch, new_batch))
    if lr_reference_batch <= 0:
        changes.append(("SOLVER.BASE_LR", solver.BASE_LR, solver.BASE_LR * ratio))
        solver.BASE_LR = solver.BASE_LR * ratio
    keep_max_iter, keep_warmup = iteration_counts_kept(sources)
    from_epochs = {"SOLVER.MAX_ITER": not keep_max_iter, "SOLVER.WARMUP_ITERS": not keep_warmup}
    for key in ITERATION_KEYS:
        node, name = _node_and_name(cfg, key)
        if node is None or (epochs > 0 and from_epochs.get(key, False)):
            continue
        old = node[name]
        new = _divided(key, old, ratio)
        if new != old:
            node[name] = new
            changes.append((key, old, new))
    return changes


def describe_world_size_changes(changes: list[Change]) -> str:
    """``"SOLVER.IMS_PER_BATCH 2048->1024, SOLVER.MAX_ITER 1000->2000, ..."`` (``""``: no change)."""
    return ", ".join(f"{key} {_shown(old)}->{_shown(new)}" for key, old, new in changes)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def resolve_schedule(
    cfg: CfgNode,
    num_images: int | None,
    sources: Mapping[str, int] | None = None,
    world_size: int = 1,
) -> CfgNode:
    """A copy of ``cfg`` with the batch and schedule made explicit for ``world_size`` processes and a corpus
    of ``num_images`` images.

    First the world-size rule (:func:`scale_to_world_size`: ``SOLVER.IMS_PER_GPU`` or
    ``SOLVER.REFERENCE_WORLD_SIZE``) fixes the global batch ``IMS_PER_BATCH`` and rescales the iteration
    keys and the lr with it, then:

    ``num_images`` may be None when the config does not use epochs. ``sources`` says where keys were set
    (:func:`key_sources`; None: nowhere, all defaults): an iteration count (``SOLVER.MAX_ITER``,
    ``SOLVER.WARMUP_ITERS``) set at the same level as its epoch count (``SOLVER.EPOCHS``,
    ``SOLVER.WARMUP_EPOCHS``) or at a higher one (the command line over the config file) is kept.

    * ``SOLVER.EPOCHS > 0``: ``MAX_ITER`` becomes epochs x (num_images // IMS_PER_BATCH) (the last
      incomplete batch of each epoch is dropped, as in the original) and ``WARMUP_ITERS`` becomes
      WARMUP_EPOCHS x the same, then ``EPOCHS`` and ``WARMUP_EPOCHS`` are set to 0. When ``MAX_ITER`` is
      kept, the epoch count gives way: the run has ``MAX_ITER`` iterations and, unless ``WARMUP_ITERS`` is
      kept too, the warm-up keeps its share of the schedule (WARMUP_EPOCHS / EPOCHS of it).
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
    scale_to_world_size(cfg, world_size, sources or {})
    batch = solver.IMS_PER_BATCH
    if batch % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={batch} is not divisible by the {world_size} processes "
            "(or set SOLVER.IMS_PER_GPU, the batch of each process)"
        )
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
        keep_max_iter, keep_warmup = iteration_counts_kept(sources or {})
        if not keep_warmup:
            if keep_max_iter:
                solver.WARMUP_ITERS = round(solver.MAX_ITER * solver.WARMUP_EPOCHS / solver.EPOCHS)
            else:
                solver.WARMUP_ITERS = solver.WARMUP_EPOCHS * iters_per_epoch
        if not keep_max_iter:
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


def describe_schedule(
    requested: CfgNode, resolved: CfgNode, sources: Mapping[str, int] | None = None, world_size: int = 1
) -> str:
    """One log line: the batch per process and in all, the resolved schedule and, where the world-size rule
    changed the batch (with every key it rescaled, old->new) or an iteration count replaced epochs, that
    it did.
    """
    solver = resolved.SOLVER
    line = (
        f"resolved schedule on {world_size} process(es): {solver.IMS_PER_BATCH // world_size} images per "
        f"process (GPU), global batch {solver.IMS_PER_BATCH}, BASE_LR {solver.BASE_LR:g}, "
        f"{solver.ITERS_PER_EPOCH} iterations per epoch, MAX_ITER {solver.MAX_ITER}, "
        f"WARMUP_ITERS {solver.WARMUP_ITERS}"
    )
    asked = requested.SOLVER
    if asked.IMS_PER_GPU > 0:
        line += f"; SOLVER.IMS_PER_GPU={asked.IMS_PER_GPU} replaces IMS_PER_BATCH {asked.IMS_PER_BATCH}"
    elif asked.REFERENCE_WORLD_SIZE > 0 and asked.REFERENCE_WORLD_SIZE != world_size:
        line += (
            f"; SOLVER.REFERENCE_WORLD_SIZE={asked.REFERENCE_WORLD_SIZE}: the config's global batch "
            f"{asked.IMS_PER_BATCH} scaled to {world_size} processes"
        )
    scratch = requested.clone()
    scratch.defrost()
    changes = scale_to_world_size(scratch, world_size, sources or {})
    if changes:
        line += f"; world-size rule: {describe_world_size_changes(changes)}"
    epochs, warmup_epochs = requested.SOLVER.EPOCHS, requested.SOLVER.WARMUP_EPOCHS
    keep_max_iter, keep_warmup = iteration_counts_kept(sources or {})
    if epochs > 0 and keep_max_iter:
        line += (
            f"; SOLVER.MAX_ITER={solver.MAX_ITER} replaces SOLVER.EPOCHS={epochs} "
            f"({epochs * solver.ITERS_PER_EPOCH} iterations)"
        )
        if not keep_warmup:
            line += f", the warm-up keeps its share ({warmup_epochs} of {epochs} epochs)"
    if epochs > 0 and keep_warmup and warmup_epochs > 0:
        line += f"; SOLVER.WARMUP_ITERS={solver.WARMUP_ITERS} replaces SOLVER.WARMUP_EPOCHS={warmup_epochs}"
    return line
