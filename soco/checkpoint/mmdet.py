"""Export converted weights to MMDetection 3.x: ``{"state_dict": ..., "meta": ...}`` for ``load_from``.

Input is the output of :func:`~soco.checkpoint.convert_checkpoint` (Detectron2 suffix names), so every
release the Detectron2 converter reads is exported too. Module names are those of mmdet 3.3's
Mask R-CNN (``mmdet_configs/`` holds the matching fine-tuning configs):

==============================  =====================================================================
Detectron2 name                 MMDetection key (``target="fpn"``)
==============================  =====================================================================
``stem.*``, ``res2..5.*``       ``backbone.*`` (torchvision ResNet names)
``fpn_lateral{l}.*``            ``neck.lateral_convs.{l-2}.conv.*`` / ``.bn.*``
``fpn_output{l}.*``             ``neck.fpn_convs.{l-2}.conv.*`` / ``.bn.*``
``box_head.conv{k}.*``          ``roi_head.bbox_head.shared_convs.{k-1}.conv.*`` / ``.bn.*``
``box_head.fc{k}.*``            ``roi_head.bbox_head.shared_fcs.{k-1}.*``
==============================  =====================================================================

``target="c4"`` puts ``stem``/``res2..4`` in ``backbone.*`` (a 3-stage ResNet) and ``res5`` in
``roi_head.shared_head.layer4.*`` (mmdet's ``ResLayer``); FPN and box-head weights have no place in a
C4 model and are an error (export ``keep="backbone"`` weights instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from .io import as_tensor
from .rename import (
    UnknownTensorName,
    detectron2_box_head_to_mmdet,
    detectron2_fpn_to_mmdet,
    detectron2_to_torchvision,
    parse_detectron2,
)

MMDET_TARGETS = ("fpn", "c4")
# MMDetection key prefix of each exported part: a model key under one of them is filled by an export
# that has that part (the box head's fc_cls / fc_reg are the detector's own, outside "bbox_head").
MMDET_PARTS = {
    "backbone": "backbone.",
    "neck": "neck.",
    "bbox_head": "roi_head.bbox_head.shared_",
    "shared_head": "roi_head.shared_head.",
}


def mmdet_name(name: str, target: str) -> str:
    """The MMDetection key of the Detectron2 suffix name ``name`` in a ``target`` ("fpn"/"c4") model.

    Raises ``ValueError`` naming the tensor when it has no place in that model.
    """
    if target not in MMDET_TARGETS:
        raise ValueError(f"MMDetection target must be one of {MMDET_TARGETS}, got {target!r}")
    try:
        if name.startswith("fpn_"):
            if target == "c4":
                raise ValueError(
                    f"{name!r} is an FPN weight: a C4 model has no neck (convert with --keep backbone)"
                )
            return "neck." + detectron2_fpn_to_mmdet(name)
        if name.startswith("box_head."):
            if target == "c4":
                raise ValueError(
                    f"{name!r} is a box-head weight: the C4 head is res5 (convert with --keep backbone)"
                )
            return "roi_head.bbox_head." + detectron2_box_head_to_mmdet(name)
        torchvision = detectron2_to_torchvision(name)
    except UnknownTensorName as e:
        raise ValueError(f"no MMDetection name for {e}") from None
    if target == "c4" and parse_detectron2(name).stage == 5:
        return "roi_head.shared_head." + torchvision
    return "backbone." + torchvision


def mmdet_state_dict(weights: Mapping[str, np.ndarray], target: str = "fpn") -> dict[str, np.ndarray]:
    """``{MMDetection key: array}`` for every tensor of ``weights`` (no tensor is left out)."""
    return {mmdet_name(name, target): value for name, value in weights.items()}


def part_counts(state: Mapping[str, Any]) -> dict[str, int]:
    """Number of keys of ``state`` under each part of :data:`MMDET_PARTS` that has any."""
    counts = Counter(
        next((part for part, prefix in MMDET_PARTS.items() if key.startswith(prefix)), "other")
        for key in state
    )
    return {part: counts[part] for part in [*MMDET_PARTS, "other"] if counts[part]}


def mmdet_payload(state: Mapping[str, np.ndarray], meta: Mapping[str, str]) -> dict[str, Any]:
    """``{"state_dict": tensors, "meta": meta}``: what mmengine's ``load_from`` / ``load_checkpoint`` reads
    (``torch.load`` of tensors and strings only, so it loads under ``weights_only=True``)."""
    return {"state_dict": {key: as_tensor(value) for key, value in state.items()}, "meta": dict(meta)}
