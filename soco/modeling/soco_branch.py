"""A SoCo branch: view -> backbone (+FPN) -> RoIAlign of each box set -> RoI head -> projector: (N, M, D)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.poolers import ROIPooler
from torch import Tensor, nn

from soco.data import batch_keys

from .soco_rois import head_batches, pool_boxes, run_in_batches, slot_levels

__all__ = ["SoCoBranch", "pad_to_divisibility"]


def pad_to_divisibility(images: Tensor, divisor: int) -> Tensor:
    """Zero-pad (N, 3, H, W) at the bottom/right to a multiple of ``divisor`` (a backbone's size divisibility,
    32 for FPN), as Detectron2 pads its inputs: a 112 px view becomes 128 px. Box coordinates are unaffected.
    """
    if divisor <= 1:
        return images
    height, width = images.shape[-2:]
    pad_bottom, pad_right = -height % divisor, -width % divisor
    if pad_bottom == 0 and pad_right == 0:
        return images
    return F.pad(images, (0, pad_right, 0, pad_bottom))


class SoCoBranch(nn.Module):
    """Backbone, RoI head and projector: the part of SoCo that has a momentum (target) copy.

    ``in_features``: the backbone outputs pooled, finest first, matching ``pooler``'s scales.
    ``pool_all_levels`` and ``head_batching`` (``SOCO.POOL_ALL_LEVELS``, ``SOCO.HEAD_BATCHING``): see
    ``soco_rois``. The RoI head and projector of a box set run once (``"per_box_set"``) or once per pyramid
    level (``"per_level"``).
    """

    def __init__(
        self,
        backbone: Backbone,
        roi_heads: nn.Module,
        projector: nn.Module,
        pooler: ROIPooler,
        in_features: Sequence[str],
        pool_all_levels: bool,
        head_batching: str,
    ):
        super().__init__()
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.projector = projector
        self.pooler = pooler
        self.in_features = list(in_features)
        self.pool_all_levels = pool_all_levels
        self.head_batching = head_batching

    def forward(self, view: Tensor, boxes: Sequence[Tensor], levels: Sequence[Tensor]) -> list[Tensor]:
        """Projector outputs of the box sets of one view, the backbone run once.

        ``view`` (N, 3, H, W); ``boxes`` and ``levels``: one (N, K, 4) and one (N, K) per box set on the
        view. Returns one (N, M, D) per box set, M = P * K (every level pooled) or K.
        """
        features = self.features(view)
        return [self.embed(features, b, lv) for b, lv in zip(boxes, levels, strict=True)]

    def features(self, view: Tensor) -> list[Tensor]:
        """The pooled maps of a view, (N, 3, H, W) -> P maps (N, C, H_p, W_p), after padding the view."""
        by_name = self.backbone(pad_to_divisibility(view, self.backbone.size_divisibility))
        return [by_name[name] for name in self.in_features]

    def embed(self, features: list[Tensor], boxes: Tensor, levels: Tensor) -> Tensor:
        """RoIAlign, RoI head and projector of one box set: (N, K, 4) boxes -> (N, M, D)."""
        pooled = pool_boxes(features, boxes, levels, self.pooler, self.pool_all_levels)  # (N, M, C, S, S)
        projected = run_in_batches(
            [self.roi_heads, self.projector], pooled.flatten(0, 1), self.head_batches(levels)
        )  # (N * M, D)
        return projected.reshape(pooled.shape[0], pooled.shape[1], -1)

    def head_batches(self, levels: Tensor) -> list[Tensor] | None:
        """The (Sync)BN batches of a box set's N * M slots, from its box levels (N, K)."""
        num_levels = len(self.in_features)
        per_slot = slot_levels(levels, num_levels, self.pool_all_levels)  # (N, M)
        return head_batches(per_slot, num_levels, self.head_batching)

    def embed_box_sets(self, batch: dict[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
        """Projector outputs (N, M, D) of the box sets ``names`` of a batch, running the backbone once per
        view.
        """
        by_view: dict[int, list[str]] = {}
        for name in names:
            by_view.setdefault(batch_keys.view_of(name), []).append(name)
        embedded = {}
        for view, on_view in sorted(by_view.items()):
            boxes = [batch[batch_keys.boxes_key(name)] for name in on_view]
            levels = [batch[batch_keys.levels_key(name)] for name in on_view]
            embedded.update(zip(on_view, self(batch[batch_keys.view_key(view)], boxes, levels), strict=True))
        return embedded
