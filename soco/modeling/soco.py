"""SoCo meta-architectures (FPN, FPN* and C4) built from Detectron2 parts, registered in META_ARCH_REGISTRY.

Data path of one view pair (box sets a and b, see ``soco.data.soco.views`` for the batch layout):

    view -> backbone (+FPN) -> RoIAlign of K boxes (fp32) -> RoI head -> projector [-> predictor] -> (N, M, D)

with M = P * K level-major slots (every box pooled on every level) or K (each box on its assigned level
only, ``SOCO.POOL_ALL_LEVELS False``). The online branch adds the predictor; the momentum target branch
(``target.*``: backbone, RoI head and projector) runs without gradient and in train mode (batch-norm uses
batch statistics, as in BYOL and SoCo). The loss of a pair is ``symmetric_pair_loss`` (``soco_loss.py``).

Parameter names are Detectron2's, so the online weights load by name into a Detectron2 Mask R-CNN:
``backbone.bottom_up.*``, ``backbone.fpn_lateral2.*``, ``roi_heads.box_head.conv1.*`` (FPN) or
``backbone.res2..res4.*``, ``roi_heads.res5.*`` (C4); heads ``projector.*``, ``predictor.*``.

As in the original, the backbone runs once per view and the RoI head once per box set, so batch-norm
statistics are per view / per box set. ``SOCO.POOL_ALL_LEVELS`` True (default, the original) pools every box
on every level: the crops on unassigned levels get no loss weight (the correspondence keeps only the
assigned level) but pass through the head and MLPs and shape their (Sync)BN statistics. False pools each
box on its assigned level only: the same loss terms, different BN statistics, about 4x less head work.
SoCo*'s pair (1, 4) reuses V1's box set of pair (1, 2), which is embedded once.

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
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import build_box_head
from torch import Tensor, nn

from .events import put_scalars
from .mlp import MLP
from .momentum import create_target, ema_update_
from .precision import at_least_float32
from .soco_loss import symmetric_pair_loss

__all__ = ["SoCoC4", "SoCoFPN", "build_res5_head", "zero_init_last_norms"]


def zero_init_last_norms(module: nn.Module) -> None:
    """Set gamma = 0 in the last norm of every residual block under ``module`` (blocks start as identity)."""
    for block in module.modules():
        if isinstance(block, BottleneckBlock):
            nn.init.zeros_(block.conv3.norm.weight)
        elif isinstance(block, BasicBlock):
            nn.init.zeros_(block.conv2.norm.weight)


def build_res5_head(cfg: CfgNode) -> tuple[nn.Sequential, int]:
    """The res5 stage run on C4 RoI features, shaped exactly like Detectron2's ``Res5ROIHeads.res5``
    (three bottleneck blocks, first stride 2), so the weights load into a C4 Mask R-CNN. Returns it and
    its output channels.
    """
    resnets = cfg.MODEL.RESNETS
    out_channels = resnets.RES2_OUT_CHANNELS * 8
    blocks = ResNet.make_stage(
        BottleneckBlock,
        3,
        stride_per_block=[2, 1, 1],
        in_channels=out_channels // 2,
        bottleneck_channels=resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP * 8,
        out_channels=out_channels,
        num_groups=resnets.NUM_GROUPS,
        norm=resnets.NORM,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
    )
    return nn.Sequential(*blocks), out_channels


class _Branch(nn.Module):
    """Backbone -> RoI head -> projector: the part of SoCo that has a momentum (target) copy."""

    def __init__(self, backbone: Backbone, roi_heads: nn.ModuleDict, projector: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.projector = projector


def _box_set_pairs(batch: dict[str, Tensor]) -> list[tuple[str, str]]:
    """The view pairs of a batch, from its ``correspondence{a}_vs_{b}`` keys, in a fixed order."""
    prefix = "correspondence"
    pairs = [tuple(key[len(prefix) :].split("_vs_")) for key in batch if key.startswith(prefix)]
    if not pairs:
        raise ValueError(
            "the batch has no 'correspondence{a}_vs_{b}' entry: SoCo models need a SoCo view generator "
            "(PRETRAIN.DATA.VIEW_GENERATOR SoCoFPNViews, SoCoFPNStarViews or SoCoC4Views) and proposals"
        )
    return sorted(pairs)


def _view_of(box_set: str) -> int:
    """Box set "1_2" lives in view 1, "3" in view 3."""
    return int(box_set.split("_")[0])


class SoCo(nn.Module):
    """Shared body of the SoCo meta-architectures; subclasses define how pooled RoIs become box features.

    Forward input: a batch from a SoCo view generator (``view{v}``, ``boxes{s}``, ``levels{s}``,
    ``correspondence{a}_vs_{b}``). Output (training): one loss per pair, ``loss_{a}_vs_{b}``, each the
    symmetric negative cosine in [-4, 4]; their sum is the SoCo loss.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        roi_heads: nn.ModuleDict,
        projector: nn.Module,
        predictor: nn.Module,
        in_features: list[str],
        pooler: ROIPooler,
        pool_all_levels: bool,
        zero_init_residual: bool,
    ):
        super().__init__()
        if zero_init_residual:
            zero_init_last_norms(backbone)
            zero_init_last_norms(roi_heads)
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.projector = projector
        self.predictor = predictor
        self.target = create_target(_Branch(backbone, roi_heads, projector))
        self.in_features = list(in_features)
        self.pooler = pooler
        self.pool_all_levels = pool_all_levels

    @property
    def device(self) -> torch.device:
        return self.predictor[0].weight.device

    @torch.no_grad()
    def momentum_update(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online, over the backbone, RoI head and projector."""
        ema_update_(self.target, _Branch(self.backbone, self.roi_heads, self.projector), tau)

    def box_features(self, branch: nn.Module, pooled: Tensor) -> Tensor:
        """Pooled RoIs (R, C, S, S) -> box features (R, F) with ``branch``'s RoI head."""
        raise NotImplementedError

    def _pool(self, features: list[Tensor], boxes: Tensor, levels: Tensor) -> Tensor:
        """RoIAlign in fp32. boxes (N, K, 4) view pixels, levels (N, K) -> (N * M, C, S, S), rows ordered
        (image, level, box) when every level is pooled (M = P * K), else (image, box) (M = K).
        """
        num_images, k, _ = boxes.shape
        image_index = torch.arange(num_images, device=boxes.device, dtype=boxes.dtype).repeat_interleave(k)
        rois = torch.cat([image_index[:, None], boxes.reshape(-1, 4)], dim=1)  # (N * K, 5)
        with torch.autocast(device_type=boxes.device.type, enabled=False):
            features = [at_least_float32(f) for f in features]
            rois = at_least_float32(rois)
            level_poolers = self.pooler.level_poolers
            if self.pool_all_levels:
                pooled = torch.stack([pool(f, rois) for pool, f in zip(level_poolers, features, strict=True)])
                pooled = pooled.reshape(len(features), num_images, k, *pooled.shape[2:])  # (P, N, K, C, S, S)
                return pooled.transpose(0, 1).flatten(0, 2)
            levels = levels.reshape(-1)
            size = self.pooler.output_size
            pooled = rois.new_zeros((len(rois), features[0].shape[1], *size))
            for level, (pool, f) in enumerate(zip(level_poolers, features, strict=True)):
                chosen = torch.nonzero(levels == level).squeeze(1)
                if len(chosen):
                    pooled[chosen] = pool(f, rois[chosen])
            return pooled

    def _embed(self, branch: nn.Module, features: list[Tensor], boxes: Tensor, levels: Tensor) -> Tensor:
        """Projector outputs of a box set: (N, M, D)."""
        pooled = self._pool(features, boxes, levels)
        projected = branch.projector(self.box_features(branch, pooled))  # (N * M, D)
        return projected.reshape(boxes.shape[0], -1, projected.shape[-1])

    def _slots(self, correspondence: Tensor, levels_a: Tensor, levels_b: Tensor) -> Tensor:
        """Correspondence over the embedded slots: (N, P*K, P*K) unchanged when every level is pooled, else
        reduced to (N, K, K) between each box's assigned-level slots (the only rows/columns that can be 1).
        """
        if self.pool_all_levels:
            return correspondence
        k = levels_a.shape[1]
        box = torch.arange(k, device=levels_a.device)
        rows = (levels_a * k + box)[:, :, None].expand(-1, -1, correspondence.shape[2])
        correspondence = correspondence.gather(1, rows)  # (N, K, P*K)
        cols = (levels_b * k + box)[:, None, :].expand(-1, k, -1)
        return correspondence.gather(2, cols)  # (N, K, K)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        pairs = _box_set_pairs(batch)
        box_sets = sorted({name for pair in pairs for name in pair})

        online = self._embed_box_sets(self, batch, box_sets)
        predictions = {name: self._predict(embedded) for name, embedded in online.items()}
        with torch.no_grad():
            targets = self._embed_box_sets(self.target, batch, box_sets)

        losses = {}
        unmatched = 0.0
        for a, b in pairs:
            correspondence = batch[f"correspondence{a}_vs_{b}"]
            correspondence = self._slots(correspondence, batch[f"levels{a}"], batch[f"levels{b}"])
            losses[f"loss_{a}_vs_{b}"] = symmetric_pair_loss(
                predictions[a], targets[a], predictions[b], targets[b], correspondence
            )
            unmatched += (correspondence.sum(dim=(1, 2)) == 0).float().mean()
        # pairs without any matched box contribute 0 to the loss: log how often that happens
        put_scalars(**{"soco/unmatched_pair_fraction": float(unmatched) / len(pairs)})
        return losses

    def _embed_box_sets(
        self, branch: nn.Module, batch: dict[str, Tensor], box_sets: list[str]
    ) -> dict[str, Tensor]:
        """Projector outputs (N, M, D) of every box set, running ``branch``'s backbone once per view."""
        views = sorted({_view_of(name) for name in box_sets})
        features = {}
        for view in views:
            by_name = branch.backbone(self.pad_to_divisibility(batch[f"view{view}"]))
            features[view] = [by_name[name] for name in self.in_features]
        return {
            name: self._embed(branch, features[_view_of(name)], batch[f"boxes{name}"], batch[f"levels{name}"])
            for name in box_sets
        }

    def pad_to_divisibility(self, images: Tensor) -> Tensor:
        """Zero-pad (N, 3, H, W) at the bottom/right to the backbone's size divisibility (32 for FPN), as
        Detectron2 does: a 112 px view becomes 128 px. Box coordinates are unaffected.
        """
        divisor = self.backbone.size_divisibility
        if divisor <= 1:
            return images
        height, width = images.shape[-2:]
        pad_bottom, pad_right = -height % divisor, -width % divisor
        if pad_bottom == 0 and pad_right == 0:
            return images
        return torch.nn.functional.pad(images, (0, pad_right, 0, pad_bottom))

    def _predict(self, embedded: Tensor) -> Tensor:
        """Online predictor on (N, M, D) projector outputs."""
        return self.predictor(embedded.flatten(0, 1)).reshape(embedded.shape[0], embedded.shape[1], -1)


def _common_from_config(cfg: CfgNode, backbone: Backbone, box_feature_dim: int) -> dict:
    """The parts every SoCo variant builds the same way: projector, predictor, pooler, flags."""
    head = cfg.SOCO.HEAD
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    shapes = backbone.output_shape()
    missing = [f for f in in_features if f not in shapes]
    if missing:
        raise ValueError(
            f"MODEL.ROI_HEADS.IN_FEATURES={in_features}: {missing} not produced by the backbone "
            f"(it produces {sorted(shapes)})"
        )
    box_head = cfg.MODEL.ROI_BOX_HEAD
    return {
        "backbone": backbone,
        "projector": MLP(box_feature_dim, head.MLP_HIDDEN_DIM, head.MLP_OUT_DIM, norm=head.MLP_NORM),
        "predictor": MLP(head.MLP_OUT_DIM, head.MLP_HIDDEN_DIM, head.MLP_OUT_DIM, norm=head.MLP_NORM),
        "in_features": in_features,
        "pooler": ROIPooler(
            output_size=box_head.POOLER_RESOLUTION,
            scales=[1.0 / shapes[f].stride for f in in_features],
            sampling_ratio=box_head.POOLER_SAMPLING_RATIO,
            pooler_type=box_head.POOLER_TYPE,
        ),
        "pool_all_levels": cfg.SOCO.POOL_ALL_LEVELS,
        "zero_init_residual": cfg.SOCO.ZERO_INIT_RESIDUAL,
    }


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
        backbone = build_backbone(cfg)
        channels = {backbone.output_shape()[f].channels for f in cfg.MODEL.ROI_HEADS.IN_FEATURES}
        size = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        box_head = build_box_head(cfg, ShapeSpec(channels=channels.pop(), height=size, width=size))
        ret = _common_from_config(cfg, backbone, box_head.output_shape.channels)
        ret["roi_heads"] = nn.ModuleDict({"box_head": box_head})
        return ret

    def box_features(self, branch: nn.Module, pooled: Tensor) -> Tensor:
        return branch.roi_heads.box_head(pooled)  # (R, FC_DIM)


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
        backbone = build_backbone(cfg)
        res5, channels = build_res5_head(cfg)
        ret = _common_from_config(cfg, backbone, channels)
        ret["roi_heads"] = nn.ModuleDict({"res5": res5})
        return ret

    def box_features(self, branch: nn.Module, pooled: Tensor) -> Tensor:
        return branch.roi_heads.res5(pooled).mean(dim=(2, 3))  # (R, 2048)
