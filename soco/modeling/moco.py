"""MoCo v2 (He et al. 2020, Chen et al. 2020): a query encoder against a momentum key encoder and a queue.

    query = normalize(projector(pool(backbone(view_1)["res5"])))                (B, D)
    key   = normalize(target.projector(pool(target.backbone(view_2)["res5"])))  (B, D), no gradient
    loss  = InfoNCE over [key, queue] at temperature T; then the keys are enqueued.

The key encoder (``target``) follows the query encoder by an EMA of the parameters that the engine
applies before every step (``PRETRAIN.MOMENTUM.SCHEDULE constant``, ``BASE 0.999``). Under DDP the key
encoder sees a shuffled global batch (shuffle-BN, its permutation seeded by ``SEED`` and the iteration, so
that a resumed run shuffles as the uninterrupted one); on one process that is a no-op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from torch import Tensor, nn

from soco.data.batch_keys import TWO_VIEWS_KEY

from .backbone import build_res5_backbone, global_pool
from .contrastive import batch_shuffle, batch_unshuffle, contrastive_accuracy, info_nce_logits, info_nce_loss
from .events import put_scalars
from .mlp import MLP
from .momentum import create_target, ema_update_
from .queue import FeatureQueue

__all__ = ["MoCo"]


@META_ARCH_REGISTRY.register()
class MoCo(nn.Module):
    """MoCo v2. Input batch ``{"views": (B, 2, 3, H, W)}`` (``MoCoV2Views``); output ``{"loss_moco"}``.

    Modules: ``backbone`` (Detectron2 ResNet, res5), ``projector`` (MLP), ``target`` (momentum copies of
    both under the same names), ``queue`` (:class:`FeatureQueue` of past keys). Logs ``moco_acc``, the
    top-1 accuracy in percent of the (1 + K)-way InfoNCE classification.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        projector: nn.Module,
        embed_dim: int,
        queue_length: int,
        temperature: float,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.queue = FeatureQueue(queue_length, embed_dim)
        self.temperature = temperature
        self.shuffle_seed = shuffle_seed
        self.target = create_target(nn.ModuleDict({"backbone": backbone, "projector": projector}))

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone, channels = build_res5_backbone(cfg)
        if cfg.MOCO.QUEUE_LENGTH % cfg.SOLVER.IMS_PER_BATCH:
            raise ValueError(
                f"MOCO.QUEUE_LENGTH={cfg.MOCO.QUEUE_LENGTH} must be a multiple of SOLVER.IMS_PER_BATCH="
                f"{cfg.SOLVER.IMS_PER_BATCH}: the keys of a global batch are enqueued together"
            )
        return {
            "backbone": backbone,
            "projector": MLP(channels, cfg.MOCO.MLP_HIDDEN_DIM, cfg.MOCO.EMBED_DIM, norm=cfg.MOCO.MLP_NORM),
            "embed_dim": cfg.MOCO.EMBED_DIM,
            "queue_length": cfg.MOCO.QUEUE_LENGTH,
            "temperature": cfg.MOCO.TEMPERATURE,
            "shuffle_seed": cfg.SEED,
        }

    @property
    def device(self) -> torch.device:
        return self.queue.features.device

    def online_modules(self) -> nn.ModuleDict:
        """The online modules the target mirrors, under the target's names (not registered twice)."""
        return nn.ModuleDict({name: getattr(self, name) for name in self.target})

    @torch.no_grad()
    def momentum_update(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online (parameters); the engine calls it before each step."""
        ema_update_(self.target, self.online_modules(), tau)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Online branch: images ``(B, 3, H, W)`` -> (res5 ``(B, C, h, w)``, unit embeddings ``(B, D)``)."""
        features = self.backbone(images)["res5"]
        return features, F.normalize(self.projector(global_pool(features)), dim=1)

    @torch.no_grad()
    def encode_keys(self, images: Tensor) -> Tensor:
        """Target branch with shuffle-BN: images ``(B, 3, H, W)`` -> normalised keys ``(B, D)``."""
        images, unshuffle = batch_shuffle(images, self.shuffle_seed)
        keys = F.normalize(self.target.projector(global_pool(self.target.backbone(images)["res5"])), dim=1)
        return batch_unshuffle(keys, unshuffle)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = batch[TWO_VIEWS_KEY].to(self.device, non_blocking=True)  # (B, 2, 3, H, W)
        _, query = self.encode(views[:, 0])  # (B, D)
        key = self.encode_keys(views[:, 1])  # (B, D)
        logits = info_nce_logits(query, key, self.queue.features, self.temperature)  # (B, 1 + K)
        if self.training:
            self.queue.enqueue(key)
        put_scalars(moco_acc=contrastive_accuracy(logits))
        return {"loss_moco": info_nce_loss(logits)}
