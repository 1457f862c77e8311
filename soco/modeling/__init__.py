"""Pretraining meta-architectures (registered in Detectron2's META_ARCH_REGISTRY) and shared parts."""
from . import densecl, moco, soco, swav  # noqa: F401  (registration)
from .mlp import MLP, get_norm1d
from .momentum import create_target, ema_update_, momentum_at

__all__ = ["MLP", "create_target", "ema_update_", "get_norm1d", "momentum_at"]
