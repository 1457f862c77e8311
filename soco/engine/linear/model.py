"""The linear classifier: a frozen ResNet in eval mode, global-pooled res5, one linear layer.

The backbone is Detectron2's ResNet (``MODEL.RESNETS.*``); its weights come from any file
:mod:`soco.checkpoint` converts (our checkpoints, converted ``.pkl``, the official MoCo / SwAV / DenseCL /
SoCo / torchvision releases) and must fill every backbone tensor. The backbone stays in eval mode whatever
``train()`` is called with (its BatchNorm statistics never move) and has no trainable parameter;
:func:`changed_tensors` compares it with a snapshot (MoCo's sanity check after the first epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from torch import Tensor, nn
from torch.nn import functional as F

from soco.checkpoint import CheckpointLayoutError, convert_file

logger = logging.getLogger(__name__)

#: Batch entries: uint8 images (N, 3, H, W), or cached features (N, C5) of the ``cached_features`` protocol.
IMAGES, FEATURES, LABELS = "image", "features", "label"


class LinearClassifier(nn.Module):
    """``backbone`` (frozen, eval) -> res5 (N, C5, h, w) -> mean over h, w -> (N, C5) -> ``head`` -> (N, K).

    ``forward(batch)`` takes ``{"image": (N, 3, H, W) uint8}`` or ``{"features": (N, C5)}`` with
    ``{"label": (N,)}`` and returns ``{"loss_cls": cross entropy}`` in training mode, the logits (N, K) in
    eval mode.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        init_std: float = 0.01,
    ):
        super().__init__()
        self.backbone = backbone
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        channels = backbone.output_shape()["res5"].channels
        self.head = nn.Linear(channels, num_classes)
        nn.init.normal_(self.head.weight, std=init_std)
        nn.init.zeros_(self.head.bias)
        # pixel statistics on the 0..255 scale, so that uint8 images are normalised as the pretraining's views
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1) * 255, persistent=False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> LinearClassifier:
        """Set the head's mode; the backbone stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Global-pooled res5 of uint8 images: (N, 3, H, W) -> (N, C5), fp32."""
        images = images.to(self.pixel_mean.device, non_blocking=True).float()
        res5 = self.backbone((images - self.pixel_mean) / self.pixel_std)["res5"]
        return res5.float().mean(dim=(2, 3))

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor] | Tensor:
        if FEATURES in batch:
            features = batch[FEATURES].to(self.pixel_mean.device, non_blocking=True).float()
        else:
            features = self.features(batch[IMAGES])
        logits = self.head(features)
        if not self.training:
            return logits
        labels = batch[LABELS].to(logits.device, non_blocking=True)
        return {"loss_cls": F.cross_entropy(logits.float(), labels)}


def build_linear_backbone(cfg: CfgNode) -> nn.Module:
    """The ResNet of ``MODEL.RESNETS.*`` (any ``MODEL.BACKBONE.NAME`` that outputs res5), nothing frozen by
    Detectron2 (the classifier freezes all of it)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    if "res5" not in backbone.output_shape():
        raise ValueError(
            f"MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME} does not output res5 "
            f"(outputs {sorted(backbone.output_shape())}); use build_resnet_backbone"
        )
    return backbone


@torch.no_grad()
def load_backbone_weights(backbone: nn.Module, weights: Mapping[str, np.ndarray], source: str) -> None:
    """Copy converted weights (Detectron2 names: ``stem.*``, ``res2..5.*``) into every backbone tensor.

    Raises :class:`CheckpointLayoutError` naming the tensors the weights lack or hold in another shape;
    nothing is copied then. Weights the backbone does not use (FPN, heads) are counted in the log.
    """
    state = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [name for name in state if name not in weights]
    mismatched = [
        f"{name} {tuple(np.shape(weights[name]))} (the model needs {tuple(value.shape)})"
        for name, value in state.items()
        if name in weights and tuple(np.shape(weights[name])) != tuple(value.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} backbone tensors are missing: {', '.join(missing[:8])}")
    if mismatched:
        problems.append(f"{len(mismatched)} have another shape: {', '.join(mismatched[:8])}")
    if problems:
        raise CheckpointLayoutError(
            f"{source}: the weights leave backbone tensors unloaded ({'; '.join(problems)}); check "
            "MODEL.RESNETS.* (DEPTH, RES2_OUT_CHANNELS, ...) against the pretraining config"
        )
    for name, value in state.items():
        value.copy_(torch.as_tensor(np.asarray(weights[name])))
    unused = sorted(set(weights) - set(state))
    if unused:
        logger.info(
            "%s: %d tensors are not part of the backbone (e.g. %s), not used", source, len(unused), unused[0]
        )


def build_linear_classifier(cfg: CfgNode, num_classes: int) -> LinearClassifier:
    """The classifier of ``cfg`` on ``MODEL.DEVICE``, its backbone loaded from ``MODEL.WEIGHTS`` (any format
    :mod:`soco.checkpoint` reads) or left at random initialisation with ``LINEAR.RANDOM_INIT``."""
    backbone = build_linear_backbone(cfg)
    if cfg.MODEL.WEIGHTS:
        weights, report = convert_file(cfg.MODEL.WEIGHTS, "auto", "backbone", cfg.MODEL.TRUST_PICKLE)
        logger.info("backbone weights: %s", report.summary())
        load_backbone_weights(backbone, weights, cfg.MODEL.WEIGHTS)
    else:
        logger.warning("LINEAR.RANDOM_INIT: the backbone keeps its random initialisation (a baseline)")
    data = cfg.PRETRAIN.DATA
    model = LinearClassifier(backbone, num_classes, data.PIXEL_MEAN, data.PIXEL_STD, cfg.LINEAR.INIT_STD)
    return model.to(cfg.MODEL.DEVICE)


def backbone_snapshot(model: LinearClassifier) -> dict[str, Tensor]:
    """Copies of every backbone parameter and buffer (BatchNorm statistics included)."""
    return {name: value.detach().clone() for name, value in model.backbone.state_dict().items()}


def changed_tensors(model: LinearClassifier, snapshot: Mapping[str, Tensor]) -> list[str]:
    """Names of the backbone tensors that differ from ``snapshot`` (bit for bit)."""
    return [
        name for name, value in model.backbone.state_dict().items() if not torch.equal(value, snapshot[name])
    ]
