"""Frozen encoders of the probes, built from Detectron2 modules under the detector's parameter names.

======  =====================================================================================================
kind    own readout of a box (M boxes -> (M, F)); the image feature is always mean-pooled res5 -> (N, C5)
======  =====================================================================================================
fpn     SoCo FPN / FPN*: ResNet-FPN ``backbone``; ``ROIPooler`` over p2..p5 with Detectron2's canonical level
        rule (box side 224 -> p4), ROIAlignV2; then the conv-fc ``roi_heads.box_head`` -> (M, FC_DIM)
c4      SoCo C4 and the image-level methods: ResNet ``backbone`` to res4, RoIAlign 14 x 14 on res4, then
        ``roi_heads.res5`` and the mean over its output -> (M, C5), as Detectron2's C4 ``Res5ROIHeads``
======  =====================================================================================================

Every encoder also has the **shared** readout, the same function of the backbone for every kind so that
methods compare: RoIAlign 14 x 14 on the backbone's res4, the backbone's res5 stage, mean pool -> (M, C5).
It is the ``c4`` kind's own readout; an ``fpn`` encoder computes it from the res4 of the same forward pass.

Weights arrive under Detectron2 suffix names (``stem.*``, ``res2..5.*``, ``fpn_*``, ``box_head.*``, what
``soco.checkpoint`` converters write); :func:`architecture_from_weights` reads the architecture off them.
Norms are BatchNorm in eval mode and everything runs in fp32. Inputs are uint8 RGB images, normalised with
the pretraining's pixel mean and std.
"""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import FastRCNNConvFCHead
from detectron2.structures import Boxes, ImageList
from torch import Tensor, nn

from soco.checkpoint import CheckpointLayoutError, validate_transfer_weights

__all__ = [
    "PROBE_ENCODERS",
    "READOUTS",
    "C4ProbeEncoder",
    "FPNProbeEncoder",
    "ProbeArchitecture",
    "ProbeEncoder",
    "architecture_from_weights",
    "build_probe_encoder",
]

logger = logging.getLogger(__name__)

FPN_LEVELS = ("p2", "p3", "p4", "p5")
C4_POOLER_RESOLUTION = 14  # Detectron2's C4 configs: RoIAlign 14 x 14 on res4, res5 halves it to 7 x 7
#: The object-level readouts of :meth:`ProbeEncoder.box_readouts`, in words (the own one per encoder kind).
READOUTS = {
    "own": {
        "fpn": "FPN level of the box (canonical rule) RoIAlign 7x7 + the pretrained box head",
        "c4": "res4 RoIAlign 14x14 + res5 + mean pool (as the C4 detector)",
    },
    "shared": "res4 RoIAlign 14x14 + res5 + mean pool, the same for every method",
}
# Encoder parameter names -> checkpoint suffix names: the detector's module prefixes are dropped.
_MODULE_PREFIX = re.compile(r"^(?:backbone\.bottom_up\.|backbone\.|roi_heads\.)")


@dataclass(frozen=True)
class ProbeArchitecture:
    """What a probe encoder is built from: the ResNet, and the FPN and box head of the ``fpn`` kind."""

    kind: str  # "fpn" or "c4"
    depth: int
    stem_channels: int
    stage_channels: tuple[int, int, int, int]  # output channels of res2..res5
    num_groups: int
    width_per_group: int
    res5_block: str  # "basic" or "bottleneck"
    res5_blocks: int
    res5_bottleneck_channels: int
    stride_in_1x1: bool
    fpn_channels: int | None = None
    fpn_norm: str = ""
    box_conv_dims: tuple[int, ...] = ()
    box_fc_dims: tuple[int, ...] = ()
    box_norm: str = ""
    pooler_resolution: int = 7

    def resnet_cfg(self, out_features: Sequence[str]) -> CfgNode:
        """Detectron2 config of this ResNet (BatchNorm, nothing frozen) with ``out_features``."""
        cfg = get_cfg()
        resnets = cfg.MODEL.RESNETS
        resnets.DEPTH = self.depth
        resnets.STEM_OUT_CHANNELS = self.stem_channels
        resnets.RES2_OUT_CHANNELS = self.stage_channels[0]
        resnets.NUM_GROUPS = self.num_groups
        resnets.WIDTH_PER_GROUP = self.width_per_group
        resnets.STRIDE_IN_1X1 = self.stride_in_1x1
        resnets.NORM = "BN"
        resnets.OUT_FEATURES = list(out_features)
        cfg.MODEL.BACKBONE.FREEZE_AT = 0
        cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.OUT_CHANNELS = self.fpn_channels or 256
        cfg.MODEL.FPN.NORM = self.fpn_norm
        return cfg


def _block_count(weights: Mapping[str, np.ndarray], stage: str) -> int:
    return len({m[1] for name in weights if (m := re.match(rf"{stage}\.(\d+)\.", name))})


def architecture_from_weights(
    weights: Mapping[str, np.ndarray], stride_in_1x1: bool = False
) -> ProbeArchitecture:
    """The probe architecture of converted weights (Detectron2 suffix names): ``fpn`` when they hold an FPN
    and a box head, else ``c4``. ``stride_in_1x1`` cannot be read off weights: False for torchvision-style
    ResNets (every release soco reads), or the pretraining config's ``MODEL.RESNETS.STRIDE_IN_1X1``.
    """
    transfer = validate_transfer_weights(weights)
    groups, width = 1, 64
    if transfer.block == "bottleneck":
        width = int(weights["res2.0.conv1.weight"].shape[0])
        groups = width // int(weights["res2.0.conv2.weight"].shape[1])
    res5_width = int(weights["res5.0.conv1.weight"].shape[0])
    common = dict(
        depth=transfer.depth,
        stem_channels=int(weights["stem.conv1.weight"].shape[0]),
        stage_channels=transfer.stage_channels,
        num_groups=groups,
        width_per_group=width // groups,
        res5_block=transfer.res5_block,
        res5_blocks=_block_count(weights, "res5"),
        res5_bottleneck_channels=res5_width,
        stride_in_1x1=stride_in_1x1,
    )
    if transfer.fpn_channels is None or transfer.box_head is None:
        return ProbeArchitecture(kind="c4", **common)
    convs = tuple(
        int(weights[f"box_head.conv{k}.weight"].shape[0]) for k in range(1, _numbered(weights, "conv"))
    )
    fcs = tuple(int(weights[f"box_head.fc{k}.weight"].shape[0]) for k in range(1, _numbered(weights, "fc")))
    pooled_channels = convs[-1] if convs else transfer.fpn_channels
    resolution = math.isqrt(int(weights["box_head.fc1.weight"].shape[1]) // pooled_channels) if fcs else 7
    return ProbeArchitecture(
        kind="fpn",
        fpn_channels=transfer.fpn_channels,
        fpn_norm="BN" if "fpn_lateral2.norm.weight" in weights else "",
        box_conv_dims=convs,
        box_fc_dims=fcs,
        box_norm="BN" if "box_head.conv1.norm.weight" in weights else "",
        pooler_resolution=resolution,
        **common,
    )


def _numbered(weights: Mapping[str, np.ndarray], layer: str) -> int:
    """One past the largest k of ``box_head.{layer}{k}.weight`` (1 when there is none)."""
    ids = [int(m[1]) for name in weights if (m := re.fullmatch(rf"box_head\.{layer}(\d+)\.weight", name))]
    return max(ids, default=0) + 1


class ProbeEncoder(nn.Module, ABC):
    """Shared part of the probe encoders: input normalisation, weight loading, the image feature.

    Subclasses set ``backbone`` and ``roi_heads`` and implement :meth:`box_features` and :meth:`res5`.
    """

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: Sequence[Tensor]) -> ImageList:
        """uint8 RGB images (3, H, W) -> a zero-padded batch (N, 3, H', W') at the backbone's divisibility."""
        scaled = [
            (image.to(self.device).float() / 255 - self.pixel_mean) / self.pixel_std for image in images
        ]
        return ImageList.from_tensors(scaled, size_divisibility=self.backbone.size_divisibility)

    def image_features(self, images: Sequence[Tensor]) -> Tensor:
        """Mean-pooled res5 of whole images: N x (3, H, W) uint8 -> (N, C5)."""
        return self.res5(self.normalize(images).tensor).mean(dim=(2, 3))

    @abstractmethod
    def res5(self, images: Tensor) -> Tensor:
        """res5 feature map (N, C5, H/32, W/32) of normalised images (N, 3, H, W)."""

    @abstractmethod
    def box_features(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        """Own readout of the boxes of each image, image by image: ``boxes[i]`` (B_i, 4) XYXY -> (sum B_i,
        F)."""

    @abstractmethod
    def box_readouts(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> dict[str, Tensor]:
        """``{"own": (sum B_i, F), "shared": (sum B_i, C5)}`` from one backbone pass; an encoder whose own
        readout is the shared one returns only ``"own"``."""

    @torch.no_grad()
    def load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Copy converted weights (Detectron2 suffix names) into every parameter and buffer."""
        used, missing = set(), []
        for key, value in self.state_dict().items():
            name = _MODULE_PREFIX.sub("", key)
            if name not in weights:
                if not key.endswith("num_batches_tracked"):
                    missing.append(name)
                continue
            source = torch.as_tensor(np.asarray(weights[name]))
            if tuple(source.shape) != tuple(value.shape):
                raise CheckpointLayoutError(
                    f"shape mismatch: {name!r} is {tuple(source.shape)} in the weights, the probe encoder "
                    f"({key}) needs {tuple(value.shape)}"
                )
            value.copy_(source)
            used.add(name)
        if missing:
            raise CheckpointLayoutError(
                f"the weights lack {missing[0]!r} (and {len(missing) - 1} more) that the probe encoder needs"
            )
        unused = sorted(set(weights) - used)
        if unused:
            logger.info("probe encoder: %d weights not used (e.g. %s)", len(unused), unused[0])


class FPNProbeEncoder(ProbeEncoder):
    """ResNet-FPN + conv-fc box head, pooled as Detectron2's ``StandardROIHeads`` pools its boxes."""

    def __init__(self, arch: ProbeArchitecture, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__(pixel_mean, pixel_std)
        cfg = arch.resnet_cfg(["res2", "res3", "res4", "res5"])
        self.backbone = build_resnet_fpn_backbone(cfg, ShapeSpec(channels=3))
        shapes = self.backbone.output_shape()
        size = arch.pooler_resolution
        head = FastRCNNConvFCHead(
            ShapeSpec(channels=arch.fpn_channels, height=size, width=size),
            conv_dims=list(arch.box_conv_dims),
            fc_dims=list(arch.box_fc_dims),
            conv_norm=arch.box_norm,
        )
        self.roi_heads = nn.ModuleDict({"box_head": head})
        self.pooler = ROIPooler(
            output_size=size,
            scales=[1.0 / shapes[f].stride for f in FPN_LEVELS],
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
            canonical_box_size=224,
            canonical_level=4,
        )
        self.shared_pooler = _c4_pooler(self.backbone.bottom_up)

    def res5(self, images: Tensor) -> Tensor:
        return self.backbone.bottom_up(images)["res5"]

    def _own(self, features: Mapping[str, Tensor], rois: list[Boxes]) -> Tensor:
        return self.roi_heads["box_head"](self.pooler([features[f] for f in FPN_LEVELS], rois))

    def box_features(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        features = self.backbone(self.normalize(images).tensor)
        return self._own(features, [Boxes(b.to(self.device)) for b in boxes])

    def box_readouts(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> dict[str, Tensor]:
        bottom_up: dict[str, Tensor] = {}  # the ResNet's res2..res5 of the FPN's own forward pass
        resnet = self.backbone.bottom_up
        handle = resnet.register_forward_hook(lambda module, inputs, out: bottom_up.update(out))
        try:
            features = self.backbone(self.normalize(images).tensor)
        finally:
            handle.remove()
        rois = [Boxes(b.to(self.device)) for b in boxes]
        shared = _c4_readout(self.shared_pooler, resnet.res5, bottom_up["res4"], rois)
        return {"own": self._own(features, rois), "shared": shared}


def _res5_stage(arch: ProbeArchitecture) -> nn.Sequential:
    """res5 as the weights hold it (first block stride 2), also Detectron2's C4 ``Res5ROIHeads.res5``."""
    kwargs = dict(in_channels=arch.stage_channels[2], out_channels=arch.stage_channels[3], norm="BN")
    if arch.res5_block == "bottleneck":
        block = BottleneckBlock
        kwargs |= dict(
            bottleneck_channels=arch.res5_bottleneck_channels,
            num_groups=arch.num_groups,
            stride_in_1x1=arch.stride_in_1x1,
        )
    else:
        block = BasicBlock
    strides = [2] + [1] * (arch.res5_blocks - 1)
    return nn.Sequential(*ResNet.make_stage(block, arch.res5_blocks, stride_per_block=strides, **kwargs))


def _c4_pooler(backbone: nn.Module) -> ROIPooler:
    """RoIAlignV2 14 x 14 on the res4 map of ``backbone`` (a Detectron2 ResNet), as the C4 detector."""
    return ROIPooler(
        output_size=C4_POOLER_RESOLUTION,
        scales=[1.0 / backbone.output_shape()["res4"].stride],
        sampling_ratio=0,
        pooler_type="ROIAlignV2",
    )


def _c4_readout(pooler: ROIPooler, res5: nn.Module, res4: Tensor, rois: list[Boxes]) -> Tensor:
    """res4 map (N, C4, H/16, W/16) and boxes -> RoIAlign (M, C4, 14, 14) -> res5 (M, C5, 7, 7) -> (M, C5)."""
    return res5(pooler([res4], rois)).mean(dim=(2, 3))


class C4ProbeEncoder(ProbeEncoder):
    """ResNet to res4 + res5 on RoIs, as Detectron2's C4 detector (``Res5ROIHeads``) pools its boxes."""

    def __init__(self, arch: ProbeArchitecture, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__(pixel_mean, pixel_std)
        self.backbone = build_resnet_backbone(arch.resnet_cfg(["res4"]), ShapeSpec(channels=3))
        self.roi_heads = nn.ModuleDict({"res5": _res5_stage(arch)})
        self.pooler = _c4_pooler(self.backbone)

    def res5(self, images: Tensor) -> Tensor:
        return self.roi_heads["res5"](self.backbone(images)["res4"])

    def box_features(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        res4 = self.backbone(self.normalize(images).tensor)["res4"]
        rois = [Boxes(b.to(self.device)) for b in boxes]
        return _c4_readout(self.pooler, self.roi_heads["res5"], res4, rois)

    def box_readouts(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> dict[str, Tensor]:
        return {"own": self.box_features(images, boxes)}  # the C4 readout is the shared one


#: Encoder class of each :attr:`ProbeArchitecture.kind`.
PROBE_ENCODERS: dict[str, type[ProbeEncoder]] = {"fpn": FPNProbeEncoder, "c4": C4ProbeEncoder}


def build_probe_encoder(
    arch: ProbeArchitecture,
    pixel_mean: Sequence[float] = (0.485, 0.456, 0.406),
    pixel_std: Sequence[float] = (0.229, 0.224, 0.225),
    device: str | torch.device = "cpu",
) -> ProbeEncoder:
    """The encoder of ``arch`` (Detectron2's initialisation) in eval mode and fp32 on ``device``.

    ``pixel_mean`` / ``pixel_std``: RGB on the [0, 1] scale, as ``PRETRAIN.DATA.PIXEL_MEAN`` / ``PIXEL_STD``.
    """
    encoder = PROBE_ENCODERS[arch.kind](arch, pixel_mean, pixel_std)
    return encoder.to(device=device, dtype=torch.float32).eval()
