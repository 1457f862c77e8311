"""Optimizers for pretraining, picked by ``cfg.SOLVER.OPTIMIZER`` from a registry."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.registry import Registry
from torch import nn

from . import lars

OPTIMIZER_REGISTRY = Registry("OPTIMIZER")
OPTIMIZER_REGISTRY.__doc__ = "Optimizers for pretraining: called as fn(cfg, param_groups) -> Optimizer."


def build_param_groups(
    model: nn.Module, weight_decay: float, weight_decay_1d: float, adapt_1d: bool
) -> list[dict]:
    """Two parameter groups over the trainable parameters of ``model``.

    1-D parameters (biases and normalization weights) get ``weight_decay_1d`` and, unless ``adapt_1d``,
    no LARS adaptation; all others get ``weight_decay`` and LARS adaptation. Frozen parameters (the
    momentum/target branch) are left out.
    """
    matrices, vectors = [], []
    for param in model.parameters():
        if param.requires_grad:
            (vectors if param.ndim <= 1 else matrices).append(param)
    groups = [
        {"params": matrices, "weight_decay": weight_decay, "lars_adapt": True},
        {"params": vectors, "weight_decay": weight_decay_1d, "lars_adapt": adapt_1d},
    ]
    return [g for g in groups if g["params"]]


@OPTIMIZER_REGISTRY.register()
def LARS(cfg: CfgNode, param_groups: list[dict]) -> torch.optim.Optimizer:  # noqa: N802
    """LARS over SGD with momentum (BYOL/SoCo/SwAV)."""
    return lars.LARS(
        param_groups,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        trust_coefficient=cfg.SOLVER.LARS.TRUST_COEFFICIENT,
        eps=cfg.SOLVER.LARS.EPS,
        foreach=cfg.SOLVER.LARS.FOREACH,
    )


@OPTIMIZER_REGISTRY.register()
def SGD(cfg: CfgNode, param_groups: list[dict]) -> torch.optim.Optimizer:  # noqa: N802
    """Plain SGD with momentum (MoCo v2, DenseCL)."""
    groups = [{k: v for k, v in g.items() if k != "lars_adapt"} for g in param_groups]
    return torch.optim.SGD(
        groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV
    )


#: Detectron2's solver keys pretraining has no use for, and what it uses instead.
UNUSED_SOLVER_KEYS = {
    "WEIGHT_DECAY_NORM": "SOLVER.WEIGHT_DECAY_1D, the weight decay of norm weights and biases",
    "WEIGHT_DECAY_BIAS": "SOLVER.WEIGHT_DECAY_1D, the weight decay of norm weights and biases",
    "BIAS_LR_FACTOR": "one lr for every parameter (whether LARS adapts biases: SOLVER.LARS.ADAPT_1D_PARAMS)",
}


def check_unused_solver_keys(cfg: CfgNode) -> None:
    """Refuse a non-default value of a key of :data:`UNUSED_SOLVER_KEYS`, naming what pretraining uses."""
    defaults = get_cfg().SOLVER
    for key, instead in UNUSED_SOLVER_KEYS.items():
        if cfg.SOLVER[key] != defaults[key]:
            raise ValueError(
                f"SOLVER.{key}={cfg.SOLVER[key]!r} is not used in pretraining (Detectron2's default "
                f"{defaults[key]!r}): it uses {instead}"
            )


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.SOLVER.OPTIMIZER`` over ``model``'s trainable parameters, with
    Detectron2's gradient clipping when ``SOLVER.CLIP_GRADIENTS.ENABLED`` (per parameter, before the step
    and, under AMP, after unscaling). Detectron2's other parameter-group keys are refused
    (:func:`check_unused_solver_keys`).
    """
    check_unused_solver_keys(cfg)
    groups = build_param_groups(
        model,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_1d=cfg.SOLVER.WEIGHT_DECAY_1D,
        adapt_1d=cfg.SOLVER.LARS.ADAPT_1D_PARAMS,
    )
    name = cfg.SOLVER.OPTIMIZER
    try:
        factory = OPTIMIZER_REGISTRY.get(name)
    except KeyError as err:
        raise KeyError(
            f"SOLVER.OPTIMIZER {name!r} is not registered; "
            f"available: {sorted(k for k, _ in OPTIMIZER_REGISTRY)}"
        ) from err
    return maybe_add_gradient_clipping(cfg, factory(cfg, groups))
