"""SoCo's RoIs: RoIAlign of a box set, the slots it fills, the head's batch-norm batches, the correspondence.

A box set holds K boxes per image, ``boxes`` (N, K, 4) xyxy in view pixels with their pyramid ``levels``
(N, K). Pooled, it fills M slots per image: M = P * K level-major slots (slot ``level * K + box``, every box
on every one of the P levels: ``all_levels``, the original) or M = K (each box on its assigned level).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.utils import comm
from torch import Tensor, nn

from .precision import at_least_float32

#: SOCO.HEAD_BATCHING values: which RoIs the RoI head, projector and predictor normalise together in (Sync)BN
HEAD_BATCHINGS = ("per_level", "per_box_set")


def pool_boxes(
    features: Sequence[Tensor], boxes: Tensor, levels: Tensor, pooler: ROIPooler, all_levels: bool
) -> Tensor:
    """RoIAlign of one box set, in fp32 (also under autocast).

    ``features``: the P pooled maps (N, C, H_p, W_p), in the order of ``pooler``'s scales; ``boxes``
    (N, K, 4); ``levels`` (N, K) int64 in [0, P). Returns (N, M, C, S, S), S = the pooler's output size,
    slots as in the module docstring (unassigned-level slots of ``all_levels`` hold real crops, not zeros).
    """
    num_images, k, _ = boxes.shape
    image_index = torch.arange(num_images, device=boxes.device, dtype=boxes.dtype).repeat_interleave(k)
    rois = torch.cat([image_index[:, None], boxes.reshape(-1, 4)], dim=1)  # (N * K, 5): image, x1, y1, x2, y2
    with torch.autocast(device_type=boxes.device.type, enabled=False):
        features = [at_least_float32(f) for f in features]
        rois = at_least_float32(rois)
        level_poolers = pooler.level_poolers
        if all_levels:
            pooled = torch.stack([pool(f, rois) for pool, f in zip(level_poolers, features, strict=True)])
            pooled = pooled.reshape(len(features), num_images, k, *pooled.shape[2:])  # (P, N, K, C, S, S)
            return pooled.transpose(0, 1).flatten(1, 2)
        flat_levels = levels.reshape(-1)
        pooled = rois.new_zeros((len(rois), features[0].shape[1], *pooler.output_size))
        for level, (pool, f) in enumerate(zip(level_poolers, features, strict=True)):
            chosen = torch.nonzero(flat_levels == level).squeeze(1)
            if len(chosen):
                pooled[chosen] = pool(f, rois[chosen])
        return pooled.reshape(num_images, k, *pooled.shape[1:])


def slot_levels(levels: Tensor, num_levels: int, all_levels: bool) -> Tensor:
    """The pyramid level of every slot: box levels (N, K) -> (N, M)."""
    if not all_levels:
        return levels
    k = levels.shape[1]
    per_slot = torch.arange(num_levels, device=levels.device).repeat_interleave(k)  # (P * K,) level-major
    return per_slot.expand(levels.shape[0], -1)


def head_batches(levels: Tensor, num_levels: int, batching: str) -> list[Tensor] | None:
    """The (Sync)BN batches of one box set's N * M slots (rows of the slots flattened image-major).

    ``levels`` (N, M): the level of each slot (:func:`slot_levels`). ``"per_box_set"``: None, one batch of
    every slot. ``"per_level"``: one batch of row indices per level, as the original runs the head, projector
    and predictor once per (box set, level). With every level pooled each batch holds N * K slots; with the
    assigned levels only, levels without a box are skipped and a level with a single box joins the batch of
    the previous level that holds boxes (of the next one when there is none before), since train-mode batch
    norm cannot normalise a single value per channel.
    """
    if batching == "per_box_set":
        return None
    flat = levels.reshape(-1)
    batches: list[Tensor] = []
    for level in range(num_levels):
        rows = torch.nonzero(flat == level).squeeze(1)
        if not len(rows):
            continue
        if batches and (len(rows) == 1 or len(batches[-1]) == 1):
            batches[-1] = torch.cat([batches[-1], rows])
        else:
            batches.append(rows)
    return batches


def run_in_batches(modules: Sequence[nn.Module], inputs: Tensor, batches: list[Tensor] | None) -> Tensor:
    """``modules`` one after the other on ``inputs`` (R, ...) -> (R, F), each batch of rows in its own call,
    so that batch norm normalises each batch apart; rows come back in their input order. ``batches`` None:
    one call on every row.
    """
    if batches is None:
        return _chain(modules, inputs)
    outputs = torch.cat([_chain(modules, inputs[rows]) for rows in batches])
    return outputs[torch.argsort(torch.cat(batches))]


def _chain(modules: Sequence[nn.Module], inputs: Tensor) -> Tensor:
    for module in modules:
        inputs = module(inputs)
    return inputs


def check_head_batching(batching: str, all_levels: bool, modules: Sequence[nn.Module]) -> None:
    """Reject an unknown ``batching`` and the one combination that breaks multi-process SyncBN.

    With ``"per_level"`` and only assigned levels pooled, which levels hold boxes differs between processes,
    so they would make different numbers of SyncBatchNorm calls (whose collectives must pair up).
    """
    if batching not in HEAD_BATCHINGS:
        raise ValueError(f"SOCO.HEAD_BATCHING={batching!r}; expected one of {HEAD_BATCHINGS}")
    if batching != "per_level" or all_levels or comm.get_world_size() == 1:
        return
    if any(isinstance(m, nn.SyncBatchNorm) for module in modules for m in module.modules()):
        raise ValueError(
            "SOCO.HEAD_BATCHING 'per_level' with SOCO.POOL_ALL_LEVELS False cannot use SyncBN in the RoI "
            "head or MLPs across processes (the processes' levels differ, so do their SyncBN calls): set "
            "SOCO.HEAD_BATCHING 'per_box_set', SOCO.POOL_ALL_LEVELS True, or BN in MODEL.ROI_BOX_HEAD.NORM "
            "and SOCO.HEAD.MLP_NORM (MODEL.RESNETS.NORM for the C4 res5 head)"
        )


def assigned_level_correspondence(correspondence: Tensor, levels_a: Tensor, levels_b: Tensor) -> Tensor:
    """Correspondence between the assigned-level slots of two box sets (the only rows/columns that can be 1):
    (N, P*K_a, P*K_b) level-major with box levels (N, K_a), (N, K_b) -> (N, K_a, K_b).
    """
    k_a, k_b = levels_a.shape[1], levels_b.shape[1]
    rows = levels_a * k_a + torch.arange(k_a, device=levels_a.device)  # (N, K_a): slot of each box of a
    cols = levels_b * k_b + torch.arange(k_b, device=levels_b.device)
    correspondence = correspondence.gather(1, rows[:, :, None].expand(-1, -1, correspondence.shape[2]))
    return correspondence.gather(2, cols[:, None, :].expand(-1, k_a, -1))
