"""``MODEL.FREEZE_PARTS``: keep transferred parts of a detector at their loaded weights (a detection probe).

A frozen part takes no gradient (``requires_grad`` False, so the optimizer never sees it) and its
BatchNorm / SyncBN layers become ``FrozenBatchNorm2d`` (fixed affine transforms of the loaded statistics,
so neither training nor precise BN changes them). Parts are the ones converted weights hold
(``soco.checkpoint.PART_MODEL_KEYS``): "backbone" (stem and res2-res5, the C4 head's res5 included, not its
new extra norm), "fpn" (lateral and output convs), "box_head" (the 4conv1fc RoI head).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from detectron2.layers import FrozenBatchNorm2d
from torch import nn

from soco.checkpoint import PART_MODEL_KEYS

logger = logging.getLogger(__name__)


def part_modules(model: nn.Module, part: str) -> list[tuple[str, nn.Module]]:
    """The outermost modules of ``model`` whose parameter keys belong to ``part``, as (name, module)."""
    pattern = PART_MODEL_KEYS[part]
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():  # parents come before their children
        if pattern.search(name + ".") and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, module))
    return found


def freeze_parts(model: nn.Module, parts: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Freeze ``parts`` of ``model`` in place and log each; returns ``{part: (parameters, norm layers)}``.

    Raises ``ValueError`` for a part name not in ``PART_MODEL_KEYS`` or one this model does not have.
    """
    unknown = [part for part in parts if part not in PART_MODEL_KEYS]
    if unknown:
        raise ValueError(
            f"MODEL.FREEZE_PARTS: unknown part(s) {unknown}; choose from {list(PART_MODEL_KEYS)}"
        )
    frozen = {}
    for part in dict.fromkeys(parts):
        modules = part_modules(model, part)
        if not modules:
            raise ValueError(
                f"MODEL.FREEZE_PARTS: this model has no {part!r} "
                f"(no module matches {PART_MODEL_KEYS[part].pattern})"
            )
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
