"""LARS: SGD with momentum whose update is rescaled per parameter by a layer-wise trust ratio."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
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

    ``foreach=True`` computes each group with ``torch._foreach_*`` kernels (a few launches per group
    instead of several per parameter); ``False`` loops over the parameters; ``None`` (default) uses the
    kernels for CUDA parameters only, as torch's optimizers do: on CPU the loop is as fast or faster
    (it keeps each parameter in cache; docs/BENCHMARKS.md). Both give the same result.
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
        foreach: bool | None = None,
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
            foreach=foreach,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(param.is_cuda for param in params)
            if foreach:
                self._foreach_group_step(group, params)
            else:
                for param in params:
                    self._param_step(group, param)
        return loss

    def _param_step(self, group: dict, param: Tensor) -> None:
        update = param.grad
        if group["weight_decay"] != 0:
            update = update.add(param, alpha=group["weight_decay"])
        if group["lars_adapt"]:
            param_norm = torch.linalg.vector_norm(param)
            update_norm = torch.linalg.vector_norm(update)
            update = update * _trust_ratio(param_norm, update_norm, group)
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = update.detach().clone()
        else:
            state["momentum_buffer"].mul_(group["momentum"]).add_(update)
        param.add_(state["momentum_buffer"], alpha=-group["lr"])

    def _foreach_group_step(self, group: dict, params: list[Tensor]) -> None:
        grads = [param.grad for param in params]
        updates = grads
        if group["weight_decay"] != 0:
            updates = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if group["lars_adapt"]:
            param_norms = torch.stack(torch._foreach_norm(params))
            update_norms = torch.stack(torch._foreach_norm(updates))
            ratios = list(_trust_ratio(param_norms, update_norms, group).unbind())  # P scalars
            if updates is grads:
                updates = torch._foreach_mul(updates, ratios)
            else:  # our own copy: scale it in place
                torch._foreach_mul_(updates, ratios)
        # a new buffer starts at 0: momentum * 0 + update is the first update itself, as in _param_step
        buffers = []
        for param in params:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param)
            buffers.append(state["momentum_buffer"])
        torch._foreach_mul_(buffers, group["momentum"])
        torch._foreach_add_(buffers, updates)
        torch._foreach_add_(params, buffers, alpha=-group["lr"])


def _trust_ratio(param_norm: Tensor, update_norm: Tensor, group: dict) -> Tensor:
    """trust_coefficient * ||w|| / (||g|| + eps), and 1 where either norm is 0 (elementwise over norms)."""
    ratio = group["trust_coefficient"] * param_norm / (update_norm + group["eps"])
    usable = (param_norm > 0) & (update_norm > 0)
    return torch.where(usable, ratio, torch.ones_like(ratio))
