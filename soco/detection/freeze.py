"""``MODEL.FREEZE_PARTS``: keep transferred parts of a detector at their loaded weights (a detection probe).

A frozen part takes no gradient (``requires_grad`` False, so the optimizer never sees it) and its
BatchNorm / SyncBN layers become ``FrozenBatchNorm2d`` (fixed affine transforms of the loaded statistics,
so neither training nor precise BN changes them). Parts are the ones converted weights hold
(``soco.checkpoint.PART_MODEL_KEYS``): "backbone" (stem and res2-res5, the C4 head's res5 included, not its
new extra norm), "fpn" (lateral and output convs), "box_head" (the 4conv1fc RoI head).

A frozen part that ``MODEL.WEIGHTS`` does not hold stays at its random initialisation (drawn from ``SEED``
like the rest of the model, so equal for every weights file); its BN statistics are first set on
``MODEL.FREEZE_CALIBRATION_ITERS`` training batches (:func:`calibrate_norms`), or the model is refused.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names
from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils.events import EventStorage
from detectron2.utils.file_io import PathManager
from fvcore.nn.precise_bn import update_bn_stats
from torch import nn

from soco.checkpoint import PART_MODEL_KEYS, load_checkpoint, transferred_parts

logger = logging.getLogger(__name__)


def part_modules(model: nn.Module, part: str) -> list[tuple[str, nn.Module]]:
    """The outermost modules of ``model`` whose parameter keys belong to ``part``, as (name, module)."""
    pattern = PART_MODEL_KEYS[part]
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():  # parents come before their children
        if pattern.search(name + ".") and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, module))
    return found


def check_parts(model: nn.Module, parts: Sequence[str]) -> None:
    """Raise ``ValueError`` for a part name not in ``PART_MODEL_KEYS`` or one ``model`` does not have."""
    unknown = [part for part in parts if part not in PART_MODEL_KEYS]
    if unknown:
        raise ValueError(
            f"MODEL.FREEZE_PARTS: unknown part(s) {unknown}; choose from {list(PART_MODEL_KEYS)}"
        )
    for part in parts:
        if not part_modules(model, part):
            raise ValueError(
                f"MODEL.FREEZE_PARTS: this model has no {part!r} "
                f"(no module matches {PART_MODEL_KEYS[part].pattern})"
            )


def freeze_parts(model: nn.Module, parts: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Freeze ``parts`` of ``model`` in place and log each; returns ``{part: (parameters, norm layers)}``.

    Raises ``ValueError`` for a part name not in ``PART_MODEL_KEYS`` or one this model does not have.
    """
    check_parts(model, parts)
    frozen = {}
    for part in dict.fromkeys(parts):
        modules = part_modules(model, part)
        num_params = num_norms = 0
        for name, module in modules:
            num_params += sum(p.numel() for p in module.parameters())
            num_norms += sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
            module.requires_grad_(False)
            converted = FrozenBatchNorm2d.convert_frozen_batchnorm(module)  # children converted in place
            if converted is not module:
                parent, _, attribute = name.rpartition(".")
                setattr(model.get_submodule(parent), attribute, converted)
        frozen[part] = (num_params, num_norms)
        logger.info(
            "MODEL.FREEZE_PARTS: %s frozen (%d parameters, %d norm layers -> FrozenBatchNorm2d)",
            part, num_params, num_norms,
        )  # fmt: skip
    return frozen


def frozen_part_names(cfg: CfgNode) -> list[str]:
    """What a fine-tuning of ``cfg`` keeps frozen: ``MODEL.FREEZE_PARTS`` and, unless the whole backbone
    is among them, the stages ``MODEL.BACKBONE.FREEZE_AT`` freezes (``backbone.stem``, ``backbone.res2``,
    ...)."""
    parts = list(dict.fromkeys(cfg.MODEL.FREEZE_PARTS))
    if "backbone" in parts:
        return parts
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    stages = ["backbone.stem"] * (freeze_at >= 1) + [f"backbone.res{k}" for k in range(2, freeze_at + 1)]
    return stages + parts


def held_parts(weights: str, trust_pickle: bool = False) -> list[str]:
    """The parts of ``PART_MODEL_KEYS`` a weights file (``MODEL.WEIGHTS``) holds; none for "" (random
    init). A file without backbone tensors is refused (:func:`~soco.checkpoint.transferred_parts`)."""
    if not weights:
        return []
    path = PathManager.get_local_path(weights)
    payload = load_checkpoint(path, trust_pickle=trust_pickle)
    if not isinstance(payload, dict):
        raise ValueError(f"MODEL.WEIGHTS {weights}: a {type(payload).__name__}, expected a dict of tensors")
    names = list(payload.get("model", payload))
    if path.endswith(".pkl") and not ("model" in payload and "__author__" in payload):
        # a Caffe2 / Detectron1 file (Detectron2's ImageNet models): DetectionCheckpointer renames its tensors
        names = convert_basic_c2_names(list(payload.get("blobs", payload)))
    return transferred_parts(names, f"MODEL.WEIGHTS {weights}")


def norm_layers(
    model: nn.Module, parts: Sequence[str], kind: type[nn.Module] = nn.modules.batchnorm._BatchNorm
) -> list[nn.Module]:
    """The norm layers of type ``kind`` (default: BatchNorm / SyncBN) of ``parts`` of ``model``."""
    return [
        layer
        for part in dict.fromkeys(parts)
        for _, module in part_modules(model, part)
        for layer in module.modules()
        if isinstance(layer, kind)
    ]


def needs_calibration(model: nn.Module, random_parts: Sequence[str], cfg: CfgNode, weights: str) -> bool:
    """Whether ``random_parts`` (frozen parts the ``weights`` file does not hold) have BN layers to
    calibrate before freezing; raises ``ValueError`` when they cannot be (``MODEL.FREEZE_CALIBRATION_ITERS``
    0, or layers ``MODEL.BACKBONE.FREEZE_AT`` already froze at mean 0 / var 1)."""
    where = f"MODEL.FREEZE_PARTS freezes {list(random_parts)}, which MODEL.WEIGHTS "
    where += f"({weights or 'empty: random init'}) does not hold"
    if norm_layers(model, random_parts, FrozenBatchNorm2d):
        raise ValueError(
            f"{where}, but MODEL.BACKBONE.FREEZE_AT {cfg.MODEL.BACKBONE.FREEZE_AT} already froze some of "
            "their BN layers at the statistics of initialisation (mean 0, var 1); set "
            "MODEL.BACKBONE.FREEZE_AT 0 so that they are calibrated"
        )
    if not norm_layers(model, random_parts):
        return False
    if cfg.MODEL.FREEZE_CALIBRATION_ITERS < 1:
        raise ValueError(
            f"{where}; their BN layers would keep the statistics of initialisation (mean 0, var 1). Set "
            "MODEL.FREEZE_CALIBRATION_ITERS > 0 to compute them on training batches first"
        )
    return True


def calibrate_norms(
    model: nn.Module,
    parts: Sequence[str],
    build_batches: Callable[[], Iterable[list[dict]]],
    num_batches: int,
) -> int:
    """Set the BN statistics of ``parts`` to their average over ``num_batches`` batches of
    ``build_batches()`` (a training loader): training forward passes without gradients (the box head sees
    the RoIs it will train on; no mask pasting), in which only those BN layers are in train mode (fvcore's
    precise BN updates those and no others). Returns how many layers were calibrated. Meant for parts frozen
    at a random initialisation, whose statistics would otherwise stay mean 0 / var 1 whatever their input.
    The random generators (Python, NumPy, torch) are left as they were: the run's data order does not depend
    on the calibration."""
    layers = norm_layers(model, parts)
    if not layers:
        return 0
    was_training = model.training
    model.train()
    chosen = {id(layer) for layer in layers}
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and id(module) not in chosen:
            module.eval()  # keeps its statistics
    with _random_state_kept(), EventStorage():  # the losses log to a storage that is dropped
        update_bn_stats(model, build_batches(), num_batches)
    model.train(was_training)
    logger.info(
        "MODEL.FREEZE_PARTS: BN statistics of %s (not in MODEL.WEIGHTS) calibrated: %d layers, the average "
        "over %d training batches (MODEL.FREEZE_CALIBRATION_ITERS)",
        list(parts), len(layers), num_batches,
    )  # fmt: skip
    return len(layers)


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random generators on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
