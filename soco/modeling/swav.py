"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn cluster codes across multi-crop views.

    z_v = normalize(projector(pool(backbone(crop_v)["res5"])))      (B, D) for every crop v
    s_v = prototypes(z_v) = z_v . C^T, prototype rows C unit-norm   (B, K)
    q_c = Sinkhorn(s_c) for the crops c in CROPS_FOR_ASSIGN          (B, K), no gradient, equal partition
    loss = mean over c, and over the other crops v != c, of  - sum_k q_c[k] log softmax(s_v / T)[k]

With a queue (small batches), the Sinkhorn of crop c also sees the scores of that crop's embeddings from
recent iterations, and only this batch's rows of the result are used. The original keeps one queue per
process of its own past embeddings (QUEUE_LENGTH / world size each). Here every process holds the same
all-gathered queue of the last QUEUE_LENGTH embeddings and feeds its 1/world-size share to the
distributed Sinkhorn: the shares together are the same set of columns, so the codes are the same, and a
checkpoint (written by process 0) restores every process's queue exactly. Prototype gradients are dropped
for the first iterations (one epoch in the published recipes), see :meth:`SwAV.after_backward`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.utils import comm
from torch import Tensor, nn

from soco.data.batch_keys import multi_crop_groups, multi_crop_key

from .backbone import build_res5_backbone, global_pool
from .events import training_iteration
from .mlp import MLP
from .queue import FeatureQueue
from .sinkhorn import distributed_sinkhorn

logger = logging.getLogger(__name__)


def _epochs_or_iters(cfg: CfgNode, epochs_key: str, iters_key: str) -> int:
    """Iterations from ``SWAV.<epochs_key>`` for epoch-scheduled runs, else ``SWAV.<iters_key>``."""
    iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH
    if iters_per_epoch > 0:
        return round(cfg.SWAV[epochs_key] * iters_per_epoch)
    return cfg.SWAV[iters_key]


@META_ARCH_REGISTRY.register()
class SwAV(nn.Module):
    """SwAV. Input ``{"crops_0": (B, n_0, 3, S_0, S_0), ...}`` (``MultiCropViews``); output ``{"loss_swav"}``.

    Modules: ``backbone`` (Detectron2 ResNet, res5), ``projector`` (MLP with BN), ``prototypes``
    (bias-free ``Linear(D, K)``), and with a queue ``queue`` (one :class:`FeatureQueue` of past
    embeddings per assigned crop). No momentum network.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        projector: nn.Module,
        embed_dim: int,
        num_prototypes: int,
        temperature: float,
        sinkhorn_epsilon: float,
        sinkhorn_iters: int,
        crops_for_assign: list[int],
        queue_length: int = 0,
        queue_start_iter: int = 0,
        freeze_prototypes_iters: int = 0,
    ):
        """``queue_length`` 0: no queue; iterations count from 0, as the trainer's."""
        super().__init__()
        if not crops_for_assign or min(crops_for_assign) < 0:
            raise ValueError(f"SWAV.CROPS_FOR_ASSIGN must list crop indices >= 0, got {crops_for_assign}")
        self.backbone = backbone
        self.projector = projector
        self.prototypes = nn.Linear(embed_dim, num_prototypes, bias=False)
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.crops_for_assign = list(crops_for_assign)
        self.queue = None
        if queue_length > 0:
            self.queue = nn.ModuleList(FeatureQueue(queue_length, embed_dim) for _ in self.crops_for_assign)
        self.queue_start_iter = queue_start_iter
        self.freeze_prototypes_iters = freeze_prototypes_iters

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone, channels = build_res5_backbone(cfg)
        global_batch = cfg.SOLVER.IMS_PER_BATCH
        queue_length = cfg.SWAV.QUEUE_LENGTH - cfg.SWAV.QUEUE_LENGTH % global_batch
        if queue_length != cfg.SWAV.QUEUE_LENGTH:
            logger.warning(
                "SWAV.QUEUE_LENGTH %d rounded down to %d, a multiple of SOLVER.IMS_PER_BATCH %d",
                cfg.SWAV.QUEUE_LENGTH,
                queue_length,
                global_batch,
            )
        if cfg.SWAV.QUEUE_LENGTH > 0 and queue_length == 0:
            raise ValueError(
                f"SWAV.QUEUE_LENGTH={cfg.SWAV.QUEUE_LENGTH} is shorter than one batch ({global_batch})"
            )
        args = {
            "backbone": backbone,
            "projector": MLP(channels, cfg.SWAV.MLP_HIDDEN_DIM, cfg.SWAV.EMBED_DIM, norm=cfg.SWAV.MLP_NORM),
            "embed_dim": cfg.SWAV.EMBED_DIM,
            "num_prototypes": cfg.SWAV.NUM_PROTOTYPES,
            "temperature": cfg.SWAV.TEMPERATURE,
            "sinkhorn_epsilon": cfg.SWAV.SINKHORN_EPSILON,
            "sinkhorn_iters": cfg.SWAV.SINKHORN_ITERS,
            "crops_for_assign": list(cfg.SWAV.CROPS_FOR_ASSIGN),
            "queue_length": queue_length,
            "queue_start_iter": _epochs_or_iters(cfg, "QUEUE_START_EPOCHS", "QUEUE_START_ITER"),
            "freeze_prototypes_iters": _epochs_or_iters(
                cfg, "FREEZE_PROTOTYPES_EPOCHS", "FREEZE_PROTOTYPES_ITERS"
            ),
        }
        logger.info(
            "SwAV: prototypes frozen for %d iterations; queue of %d embeddings%s",
            args["freeze_prototypes_iters"],
            args["queue_length"],
            f" from iteration {args['queue_start_iter']}" if queue_length else "",
        )
        return args

    @property
    def device(self) -> torch.device:
        return self.prototypes.weight.device

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype (row of ``prototypes.weight``) back onto the unit sphere."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def after_backward(self, iteration: int) -> None:
        """Drop the prototypes' gradient while ``iteration < freeze_prototypes_iters`` (engine hook)."""
        if iteration < self.freeze_prototypes_iters:
            self.prototypes.weight.grad = None

    def _pooled_res5(self, images: Tensor) -> Tensor:
        """``(N, 3, S, S)`` -> globally pooled res5 features ``(N, C)``."""
        return global_pool(self.backbone(images)["res5"])

    def _crops(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """The crop groups of the batch, largest resolution first: ``[(B, n_g, 3, S_g, S_g), ...]``."""
        num_groups = multi_crop_groups(batch)
        groups = [batch[multi_crop_key(g)].to(self.device, non_blocking=True) for g in range(num_groups)]
        if not groups:
            raise KeyError(
                f"SwAV expects the batch entries {multi_crop_key(0)}, {multi_crop_key(1)}, ... of "
                f"MultiCropViews (PRETRAIN.DATA.VIEW_GENERATOR), got {sorted(batch)}"
            )
        return groups

    @torch.no_grad()
    def assign_codes(self, slot: int, scores: Tensor, embeddings: Tensor) -> Tensor:
        """Soft codes ``(B, K)`` of assigned crop ``slot`` from its scores ``(B, K)``, embeddings ``(B, D)``.

        With a queue that has started: once full, this process's share of it is scored with the current
        prototypes and prepended to the Sinkhorn input; then this batch's embeddings are enqueued.
        """
        batch = scores.shape[0]
        uses_queue = self.queue is not None and self.training
        if uses_queue and training_iteration("SwAV's queue starts at an iteration") >= self.queue_start_iter:
            queue = self.queue[slot]
            if queue.is_full:
                world_size, rank = comm.get_world_size(), comm.get_rank()
                share = queue.features.view(world_size, -1, queue.features.shape[1])[rank]  # (L / w, D)
                scores = torch.cat([self.prototypes(share), scores])
            queue.enqueue(embeddings)
        return distributed_sinkhorn(scores, self.sinkhorn_epsilon, self.sinkhorn_iters)[-batch:]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        crops = self._crops(batch)
        batch_size = crops[0].shape[0]
        if self.training:
            self.normalize_prototypes()
        # each resolution through the backbone at once, crop-major: rows [v * B, (v + 1) * B) are crop v
        features = [self._pooled_res5(group.transpose(0, 1).flatten(0, 1)) for group in crops]  # (n_g*B, C)
        embeddings = F.normalize(self.projector(torch.cat(features)), dim=1)  # (V*B, D)
        scores = self.prototypes(embeddings)  # (V*B, K)
        num_crops = scores.shape[0] // batch_size
        if num_crops < 2 or max(self.crops_for_assign) >= num_crops:
            raise ValueError(
                f"SwAV needs at least 2 crops and SWAV.CROPS_FOR_ASSIGN {self.crops_for_assign} among them; "
                f"the batch has {num_crops} crops (SWAV.VIEWS.NUM_CROPS)"
            )
        scores = scores.view(num_crops, batch_size, -1)  # (V, B, K)
        embeddings = embeddings.view(num_crops, batch_size, -1)  # (V, B, D)
        log_probs = F.log_softmax(scores / self.temperature, dim=2)  # (V, B, K)

        loss = scores.new_zeros(())
        for slot, crop in enumerate(self.crops_for_assign):
            codes = self.assign_codes(slot, scores[crop].detach(), embeddings[crop].detach())  # (B, K)
            others = [v for v in range(num_crops) if v != crop]
            # cross-entropy of the other crops' predictions against these codes, mean over crops and batch
            loss = loss - (codes.unsqueeze(0) * log_probs[others]).sum(dim=2).mean()
        return {"loss_swav": loss / len(self.crops_for_assign)}
