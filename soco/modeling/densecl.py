"""DenseCL (Wang et al. 2021): MoCo v2 plus a dense contrastive loss between matched res5 grid cells.

    global: MoCo v2 (query/key embeddings of the pooled res5, InfoNCE against ``queue``)
    dense:  r_q = normalize(dense_projector(res5 of view 1))      (B, S*S, D), one vector per grid cell
            r_k = normalize(target.dense_projector(res5 of view 2))  (B, S*S, D), no gradient
            cell i of the query is matched to the key cell j*(i) = argmax_j cos(res5_q[i], res5_k[j])
            (backbone features, not projections); InfoNCE of r_q[i] against r_k[j*(i)] and ``dense_queue``,
            a queue of the key's *pooled* dense projections (one vector per image)
    loss = (1 - lambda) * global + lambda * dense, lambda = DENSECL.LOSS_WEIGHT (0.5)

The dense head is two per-cell linear layers (Linear-ReLU-Linear applied to every cell of the res5 grid),
which is exactly the original's 1x1 conv - ReLU - 1x1 conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor, nn

from soco.data.batch_keys import TWO_VIEWS_KEY

from .backbone import global_pool
from .contrastive import batch_shuffle, batch_unshuffle, contrastive_accuracy, info_nce_logits, info_nce_loss
from .events import put_scalars
from .mlp import MLP
from .moco import MoCo
from .momentum import create_target
from .queue import FeatureQueue


@torch.no_grad()
def dense_correspondence(query_features: Tensor, key_features: Tensor) -> Tensor:
    """For every query cell, the index of the key cell with the most cosine-similar feature.

    ``(B, C, Hq, Wq)``, ``(B, C, Hk, Wk)`` -> ``(B, Hq * Wq)`` int64 in ``[0, Hk * Wk)``; cells row-major.
    """
    query = F.normalize(query_features.flatten(2), dim=1)  # (B, C, Hq*Wq)
    key = F.normalize(key_features.flatten(2), dim=1)  # (B, C, Hk*Wk)
    similarity = query.transpose(1, 2) @ key  # (B, Hq*Wq, Hk*Wk)
    return similarity.argmax(dim=2)


def apply_per_cell(head: nn.Module, features: Tensor) -> Tensor:
    """Run ``head`` (a module on ``(N, C)``) on every cell: ``(B, C, H, W)`` -> ``(B, H * W, D)``."""
    batch = features.shape[0]
    cells = features.flatten(2).transpose(1, 2)  # (B, H*W, C)
    return head(cells.flatten(0, 1)).view(batch, cells.shape[1], -1)


@META_ARCH_REGISTRY.register()
class DenseCL(MoCo):
    """DenseCL on ``{"views": (B, 2, 3, H, W)}`` (``MoCoV2Views``); losses ``loss_global``, ``loss_dense``.

    Adds to :class:`MoCo` the modules ``dense_projector`` (and its momentum copy ``target.dense_projector``)
    and ``dense_queue``. The two loss terms are returned already weighted, so the logged total is the
    DenseCL loss; ``moco_acc`` is the accuracy of the global term.
    """

    @configurable
    def __init__(self, *, dense_projector: nn.Module, dense_loss_weight: float, **moco_args):
        super().__init__(**moco_args)
        if not 0.0 <= dense_loss_weight <= 1.0:
            raise ValueError(f"DENSECL.LOSS_WEIGHT must be in [0, 1], got {dense_loss_weight}")
        self.dense_projector = dense_projector
        self.dense_queue = FeatureQueue(self.queue.length, self.queue.features.shape[1])
        self.target["dense_projector"] = create_target(dense_projector)
        self.dense_loss_weight = dense_loss_weight

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        args = super().from_config(cfg)
        channels = args["backbone"].output_shape()["res5"].channels
        args["dense_projector"] = MLP(
            channels, cfg.MOCO.MLP_HIDDEN_DIM, cfg.MOCO.EMBED_DIM, norm=cfg.MOCO.MLP_NORM
        )
        args["dense_loss_weight"] = cfg.DENSECL.LOSS_WEIGHT
        return args

    @torch.no_grad()
    def encode_dense_keys(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Target branch with shuffle-BN on images ``(B, 3, H, W)``.

        Returns res5 ``(B, C, S, S)``, global keys ``(B, D)``, dense keys ``(B, S*S, D)`` and pooled dense
        keys ``(B, D)`` (for ``dense_queue``), all but res5 L2-normalised.
        """
        images, unshuffle = batch_shuffle(images, self.shuffle_seed)
        features = self.target.backbone(images)["res5"]
        keys = F.normalize(self.target.projector(global_pool(features)), dim=1)
        dense = apply_per_cell(self.target.dense_projector, features)  # (B, S*S, D)
        pooled_dense = F.normalize(dense.mean(dim=1), dim=1)
        outputs = (features, keys, F.normalize(dense, dim=2), pooled_dense)
        return tuple(batch_unshuffle(t, unshuffle) for t in outputs)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = batch[TWO_VIEWS_KEY].to(self.device, non_blocking=True)  # (B, 2, 3, H, W)
        query_features, query = self.encode(views[:, 0])  # (B, C, S, S), (B, D)
        dense_query = F.normalize(apply_per_cell(self.dense_projector, query_features), dim=2)  # (B, S*S, D)
        key_features, key, dense_key, pooled_dense_key = self.encode_dense_keys(views[:, 1])

        match = dense_correspondence(query_features.detach(), key_features)  # (B, S*S)
        matched_dense_key = dense_key.gather(1, match.unsqueeze(2).expand_as(dense_key))  # (B, S*S, D)
        global_logits = info_nce_logits(query, key, self.queue.features, self.temperature)  # (B, 1 + K)
        dense_logits = info_nce_logits(  # (B*S*S, 1 + K)
            dense_query.flatten(0, 1),
            matched_dense_key.flatten(0, 1),
            self.dense_queue.features,
            self.temperature,
        )
        if self.training:
            self.queue.enqueue(key)
            self.dense_queue.enqueue(pooled_dense_key)
        put_scalars(moco_acc=contrastive_accuracy(global_logits))
        return {
            "loss_global": (1.0 - self.dense_loss_weight) * info_nce_loss(global_logits),
            "loss_dense": self.dense_loss_weight * info_nce_loss(dense_logits),
        }
