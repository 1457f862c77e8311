"""LARS: SGD with momentum whose update is rescaled per parameter by a layer-wise trust ratio."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) in the form used by BYOL and SoCo.

    For every parameter ``w`` with gradient ``g`` in a group with ``lars_adapt=True``:

    1. ``g <- g + weight_decay * w``
    2. ``g <- g * trust_coefficient * ||w|| / (||g|| + eps)``, only when both norms are non-zero
    3. SGD with momentum: ``buf <- momentum * buf + g`` (``buf = g`` at first), ``w <- w - lr * buf``.

    Groups with ``lars_adapt=False`` (biases and norm parameters in SoCo) skip step 2.
    Under AMP the gradients must be unscaled before ``step`` (``GradScaler.step`` does that),
    since the trust ratio mixes ``g`` with ``weight_decay * w``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        lars_adapt: bool = True,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid LARS hyper-parameters lr={lr}, momentum={momentum}, wd={weight_decay}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_adapt=lars_adapt,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if group["weight_decay"] != 0:
                    update = update.add(param, alpha=group["weight_decay"])
                if group["lars_adapt"]:
                    param_norm = torch.linalg.vector_norm(param)
                    update_norm = torch.linalg.vector_norm(update)
                    trust_ratio = group["trust_coefficient"] * param_norm / (update_norm + group["eps"])
                    usable = (param_norm > 0) & (update_norm > 0)
                    update = update * torch.where(usable, trust_ratio, torch.ones_like(trust_ratio))
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.detach().clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
