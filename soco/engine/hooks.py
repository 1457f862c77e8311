"""Training hooks specific to self-supervised pretraining."""

from __future__ import annotations

from detectron2.engine import HookBase
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from soco.modeling.momentum import momentum_at


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class MomentumHook(HookBase):
    """Before every step, move the target network towards the online one: ``model.momentum_update(tau)``.

    tau is a pure function of the iteration (see :func:`momentum_at`); since the iteration is part of
    every checkpoint, a resumed run continues the schedule where it stopped.
    """

    def __init__(self, base: float, schedule: str, max_iter: int):
        self.base = base
        self.schedule = schedule
        self.max_iter = max_iter

    def before_step(self) -> None:
        tau = momentum_at(self.base, self.schedule, self.trainer.iter, self.max_iter)
        unwrap_model(self.trainer.model).momentum_update(tau)
        self.trainer.storage.put_scalar("tau", tau, smoothing_hint=False)


class ModelAfterBackwardHook(HookBase):
    """Call ``model.after_backward(iteration)`` between backward and the optimizer step.

    Registered on the inner step runner (``SimpleTrainer``/``AMPTrainer``), which is the one that
    calls ``after_backward`` hooks.
    """

    def after_backward(self) -> None:
        unwrap_model(self.trainer.model).after_backward(self.trainer.iter)


class ThroughputHook(HookBase):
    """Log ``images_per_sec`` (global batch / step time) after each timed step."""

    def __init__(self, global_batch: int):
        self.global_batch = global_batch

    def after_step(self) -> None:
        storage = self.trainer.storage
        if "time" in storage.histories():
            step_time = storage.history("time").latest()
            if step_time > 0:
                storage.put_scalar("images_per_sec", self.global_batch / step_time)
