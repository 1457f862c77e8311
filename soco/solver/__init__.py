"""Optimizers and parameter groups for pretraining."""

from .build import OPTIMIZER_REGISTRY, build_optimizer, build_param_groups
from .lars import LARS

__all__ = ["LARS", "OPTIMIZER_REGISTRY", "build_optimizer", "build_param_groups"]
