"""The GPU fast path's model options: channels_last memory format and a compiled backbone."""

from __future__ import annotations

import logging

import torch
from detectron2.config import CfgNode
from torch import nn

logger = logging.getLogger(__name__)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D parameter and buffer (the convs of backbone, FPN and RoI heads, online and target)
    in ``channels_last`` order, in place. Convolutions then run NHWC (tensor-core friendly under AMP) and
    pass the layout on to their outputs; inputs and RoIAlign outputs are converted by the first conv that
    sees them. Names, shapes and values are unchanged, so checkpoints load either way.
    """
    return model.to(memory_format=torch.channels_last)


def backbone_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of the modules named ``backbone``: the online one and the target's copy."""
    return {name: m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "backbone"}


def compile_backbones(model: nn.Module, backend: str, mode: str) -> list[str]:
    """``torch.compile`` every backbone of ``model`` in place (``nn.Module.compile``: parameter names stay);
    returns their names. The rest of the model (RoI heads, losses) stays eager.
    """
    backbones = backbone_modules(model)
    if not backbones:
        raise ValueError(
            f"MODEL.BACKBONE.COMPILE is set, but {type(model).__name__} has no module named 'backbone'"
        )
    for module in backbones.values():
        module.compile(backend=backend, mode=None if mode == "default" else mode)
    return sorted(backbones)


def apply_fast_path(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """Apply ``MODEL.CHANNELS_LAST`` and ``MODEL.BACKBONE.COMPILE`` to a built model (before DDP wraps it)."""
    if cfg.MODEL.CHANNELS_LAST:
        to_channels_last(model)
        logger.info("model weights in channels_last memory format")
    if cfg.MODEL.BACKBONE.COMPILE:
        names = compile_backbones(model, cfg.MODEL.BACKBONE.COMPILE, cfg.MODEL.BACKBONE.COMPILE_MODE)
        logger.info(
            "torch.compile (backend %s, mode %s) of %s",
            cfg.MODEL.BACKBONE.COMPILE,
            cfg.MODEL.BACKBONE.COMPILE_MODE,
            ", ".join(names),
        )
    return model
