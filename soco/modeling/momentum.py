"""Momentum (target) networks: creation, exponential moving average, and the tau schedule."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

MOMENTUM_SCHEDULES = ("cosine", "constant")


def create_target(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its momentum (target) network."""
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """In place: theta_target <- tau * theta_target + (1 - tau) * theta_online, over parameters only.

    Buffers (BN running statistics) are not averaged: as in BYOL/MoCo/SoCo, the target keeps the
    statistics of its own train-mode forward passes.
    """
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError(
            f"target has {len(target_params)} parameters but online has {len(online_params)}; "
            "the target must be a copy of the online module"
        )
    torch._foreach_mul_(target_params, tau)
    torch._foreach_add_(target_params, [p.detach() for p in online_params], alpha=1.0 - tau)


def momentum_at(base: float, schedule: str, iteration: int, max_iter: int) -> float:
    """Target momentum tau at ``iteration`` of ``max_iter``.

    ``"cosine"`` (BYOL/SoCo): tau = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2, rising from ``base`` to 1.
    ``"constant"`` (MoCo): tau = base.
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = min(max(iteration / max(max_iter, 1), 0.0), 1.0)
        return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
    raise ValueError(f"unknown momentum schedule {schedule!r}; expected one of {MOMENTUM_SCHEDULES}")
