"""SoCo meta-architectures (FPN, FPN* and C4) built from Detectron2 parts, registered in META_ARCH_REGISTRY.

Data path of one box set (batch layout: ``soco.data.batch_keys``, ``soco.data.soco.views``), one module or
function per arrow:

    view -> backbone (+FPN) -> RoIAlign of K boxes (fp32) -> RoI head -> projector [-> predictor] -> (N, M, D)
            SoCoBranch.features   soco_rois.pool_boxes       soco_heads    MLP        MLP

with M = P * K level-major slots (every box pooled on every level) or K (each box on its assigned level
only, ``SOCO.POOL_ALL_LEVELS False``). The online branch adds the predictor; the momentum target branch
(``target.*``: backbone, RoI head and projector) runs without gradient and in train mode (batch norm uses
batch statistics, as in BYOL and SoCo). The loss of a pair is ``symmetric_pair_loss`` (``soco_loss.py``).

Parameter names are Detectron2's, so the online weights load by name into a Detectron2 Mask R-CNN:
``backbone.bottom_up.*``, ``backbone.fpn_lateral2.*``, ``roi_heads.box_head.conv1.*`` (FPN) or
``backbone.res2..res4.*``, ``roi_heads.res5.*`` (C4); heads ``projector.*``, ``predictor.*``.

Batch-norm batches: the backbone runs once per view (both box sets of V1 share its pass). The RoI head,
projector and predictor run, with ``SOCO.HEAD_BATCHING "per_level"`` (default), once per (box set, pyramid
level) as in the original, so the RoIs of P2..P5 are normalised in separate (Sync)BN batches;
``"per_box_set"`` runs them once per box set on all its levels together (one BN batch of N * P * K RoIs).
``SOCO.POOL_ALL_LEVELS`` True (default, the original) pools every box on every level: the crops on
unassigned levels get no loss weight (the correspondence keeps only the assigned level) but pass through the
head and MLPs and shape their BN statistics. False pools each box on its assigned level only: the same loss
terms, different BN statistics, about 4x less head work; with ``"per_level"`` the boxes assigned to one
level form a batch (``soco_rois.head_batches``: a level with a single box joins a neighbour's batch;
``check_head_batching``: no SyncBN across processes). SoCo*'s pair (1, 4) reuses V1's box set of pair
(1, 2), which is embedded once.

Differences from the original worth knowing: views whose side is not a multiple of the backbone's size
divisibility (V3/V4 at 112 px with FPN's 32) are zero-padded at the bottom/right as Detectron2 pads its
inputs (the original's mmdet FPN resizes the top-down path to odd sizes instead); the FPN and box head
keep Detectron2's initialisation (c2_xavier_fill / c2_msra_fill instead of mmcv's Kaiming and PyTorch
defaults); the last norm of every residual block is zero-initialised (``SOCO.ZERO_INIT_RESIDUAL``), which
Detectron2 does not do itself.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock
from detectron2.modeling.poolers import ROIPooler
from torch import Tensor, nn

from soco.data import batch_keys

from .events import put_scalars
from .mlp import MLP
from .momentum import create_target, ema_update_
from .soco_branch import SoCoBranch
from .soco_heads import ConvFCROIHead, Res5ROIHead, build_res5_head
from .soco_loss import symmetric_pair_loss
from .soco_rois import assigned_level_correspondence, check_head_batching, run_in_batches

__all__ = ["SoCoC4", "SoCoFPN", "build_res5_head", "zero_init_last_norms"]


def zero_init_last_norms(module: nn.Module) -> None:
    """Set gamma = 0 in the last norm of every residual block under ``module`` (blocks start as identity)."""
    for block in module.modules():
        if isinstance(block, BottleneckBlock):
            nn.init.zeros_(block.conv3.norm.weight)
        elif isinstance(block, BasicBlock):
            nn.init.zeros_(block.conv2.norm.weight)


class SoCo(nn.Module):
    """Shared body of the SoCo meta-architectures; the variants differ in their backbone and RoI head.

    Forward input: a batch from a SoCo view generator (``view{v}``, ``boxes{s}``, ``levels{s}``,
    ``correspondence{a}_vs_{b}``). Output (training): one loss per pair, ``loss_{a}_vs_{b}``, each the
    symmetric negative cosine in [-4, 4]; their sum is the SoCo loss.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        roi_heads: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        in_features: list[str],
        pooler: ROIPooler,
        pool_all_levels: bool,
        head_batching: str,
        zero_init_residual: bool,
    ):
        super().__init__()
        check_head_batching(head_batching, pool_all_levels, [roi_heads, projector, predictor])
        if zero_init_residual:
            zero_init_last_norms(backbone)
            zero_init_last_norms(roi_heads)
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.projector = projector
        self.predictor = predictor
        self.in_features = list(in_features)
        self.pool_all_levels = pool_all_levels
        self.head_batching = head_batching
        self.pooler = pooler
        self.target = create_target(self.online_branch())

    @property
    def device(self) -> torch.device:
        return self.predictor[0].weight.device

    def online_branch(self) -> SoCoBranch:
        """The online branch over this model's own backbone, RoI head and projector, which stay registered
        here (``backbone.*``, ``roi_heads.*``, ``projector.*``); the target branch is a copy, ``target.*``.
        """
        return SoCoBranch(
            self.backbone,
            self.roi_heads,
            self.projector,
            self.pooler,
            self.in_features,
            self.pool_all_levels,
            self.head_batching,
        )

    @torch.no_grad()
    def momentum_update(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online, over the backbone, RoI head and projector."""
        ema_update_(self.target, self.online_branch(), tau)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        pairs = batch_keys.pairs(batch)
        if not pairs:
            raise ValueError(
                "the batch has no 'correspondence{a}_vs_{b}' entry: SoCo models need a SoCo view generator "
                "(PRETRAIN.DATA.VIEW_GENERATOR SoCoFPNViews, SoCoFPNStarViews or SoCoC4Views) and proposals"
            )
        # A box set shared by two pairs (SoCo*'s "1_2") is embedded once; the original embedded it once per
        # pair: same losses, other BN running statistics (docs/DIFFERENCES.md).
        box_sets = batch_keys.box_sets(pairs)
        online = self.online_branch()
        projections = online.embed_box_sets(batch, box_sets)  # {box set: (N, M, D)}
        predictions = {
            name: self.predict(projected, online.head_batches(batch[batch_keys.levels_key(name)]))
            for name, projected in projections.items()
        }
        with torch.no_grad():
            targets = self.target.embed_box_sets(batch, box_sets)
        return self.losses(batch, pairs, predictions, targets)

    def predict(self, projected: Tensor, batches: list[Tensor] | None) -> Tensor:
        """Online predictor on a box set's projector outputs (N, M, D), in the RoI head's BN batches."""
        predicted = run_in_batches([self.predictor], projected.flatten(0, 1), batches)
        return predicted.reshape(projected.shape)

    def losses(
        self,
        batch: dict[str, Tensor],
        pairs: list[tuple[str, str]],
        predictions: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> dict[str, Tensor]:
        """``loss_{a}_vs_{b}`` of every pair, from the online predictions and target projections (N, M, D)."""
        losses = {}
        unmatched = 0.0
        for a, b in pairs:
            correspondence = batch[batch_keys.correspondence_key(a, b)]  # (N, P*K, P*K)
            if not self.pool_all_levels:
                levels_a, levels_b = batch[batch_keys.levels_key(a)], batch[batch_keys.levels_key(b)]
                correspondence = assigned_level_correspondence(correspondence, levels_a, levels_b)
            losses[batch_keys.loss_key(a, b)] = symmetric_pair_loss(
                predictions[a], targets[a], predictions[b], targets[b], correspondence
            )
            unmatched += (correspondence.sum(dim=(1, 2)) == 0).float().mean()
        # pairs without any matched box contribute 0 to the loss: log how often that happens
        put_scalars(**{"soco/unmatched_pair_fraction": float(unmatched) / len(pairs)})
        return losses


def _common_from_config(cfg: CfgNode, backbone: Backbone, roi_heads: nn.Module) -> dict:
    """The parts every SoCo variant builds the same way: projector, predictor, pooler, flags."""
    head = cfg.SOCO.HEAD
    box_features = roi_heads.output_channels
    box_head = cfg.MODEL.ROI_BOX_HEAD
    shapes = backbone.output_shape()
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    return {
        "backbone": backbone,
        "roi_heads": roi_heads,
        "projector": MLP(box_features, head.MLP_HIDDEN_DIM, head.MLP_OUT_DIM, norm=head.MLP_NORM),
        "predictor": MLP(head.MLP_OUT_DIM, head.MLP_HIDDEN_DIM, head.MLP_OUT_DIM, norm=head.MLP_NORM),
        "in_features": in_features,
        "pooler": ROIPooler(
            output_size=box_head.POOLER_RESOLUTION,
            scales=[1.0 / shapes[f].stride for f in in_features],
            sampling_ratio=box_head.POOLER_SAMPLING_RATIO,
            pooler_type=box_head.POOLER_TYPE,
        ),
        "pool_all_levels": cfg.SOCO.POOL_ALL_LEVELS,
        "head_batching": cfg.SOCO.HEAD_BATCHING,
        "zero_init_residual": cfg.SOCO.ZERO_INIT_RESIDUAL,
    }


def _build_backbone(cfg: CfgNode) -> Backbone:
    """Detectron2's backbone of ``cfg``, checked to produce every map of ``MODEL.ROI_HEADS.IN_FEATURES``."""
    backbone = build_backbone(cfg)
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    shapes = backbone.output_shape()
    missing = [f for f in in_features if f not in shapes]
    if missing:
        raise ValueError(
            f"MODEL.ROI_HEADS.IN_FEATURES={in_features}: {missing} not produced by the backbone "
            f"(it produces {sorted(shapes)})"
        )
    return backbone


@META_ARCH_REGISTRY.register()
class SoCoFPN(SoCo):
    """SoCo with a ResNet-FPN backbone (P2..P5) and Detectron2's conv-fc box head (``roi_heads.box_head``).

    Serves SoCo (3 views, 2 pairs) and SoCo* (4 views, 3 pairs): the pairs come from the batch. Boxes are
    pooled on the levels in ``MODEL.ROI_HEADS.IN_FEATURES`` with SoCo's size rule (levels computed by the
    view generator), not Detectron2's canonical-224 rule.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        num_levels = len(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        num_thresholds = len(cfg.SOCO.BOXES.LEVEL_THRESHOLDS)
        if num_levels != num_thresholds:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES has {num_levels} levels but SOCO.BOXES.LEVEL_THRESHOLDS has "
                f"{num_thresholds} thresholds; they must match (one threshold per pyramid level)"
            )
        backbone = _build_backbone(cfg)
        channels = {backbone.output_shape()[f].channels for f in cfg.MODEL.ROI_HEADS.IN_FEATURES}
        size = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        roi_heads = ConvFCROIHead(cfg, ShapeSpec(channels=channels.pop(), height=size, width=size))
        return _common_from_config(cfg, backbone, roi_heads)


@META_ARCH_REGISTRY.register()
class SoCoC4(SoCo):
    """SoCo with a ResNet C4 backbone: RoIAlign on res4 (``POOLER_RESOLUTION`` 14), Detectron2's res5 stage
    (``roi_heads.res5``), average pooling -> 2048-d box features. One level, two views.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        if len(cfg.MODEL.ROI_HEADS.IN_FEATURES) != 1:
            raise ValueError(
                f"SoCoC4 pools one feature map; MODEL.ROI_HEADS.IN_FEATURES is "
                f"{list(cfg.MODEL.ROI_HEADS.IN_FEATURES)}"
            )
        return _common_from_config(cfg, _build_backbone(cfg), Res5ROIHead(cfg))
