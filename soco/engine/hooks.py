"""Training hooks specific to self-supervised pretraining."""

from __future__ import annotations

import logging

import numpy as np
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from soco.modeling.momentum import momentum_at
from soco_proposals.image_io import DECODE_FAILURES

logger = logging.getLogger(__name__)


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
    """After each timed step, log ``images_per_sec`` (global batch / step time) and ``data_time_share``
    (the slowest process's wait for its batch / step time: the input pipeline's share of the step).
    At the end of training, log the means over the timed steps.
    """

    def __init__(self, global_batch: int):
        self.global_batch = global_batch
        self._step_times: list[float] = []
        self._data_times: list[float] = []

    def after_step(self) -> None:
        storage = self.trainer.storage
        histories = storage.histories()
        if "time" not in histories:  # IterationTimer skips the first steps
            return
        step_time = histories["time"].latest()
        if step_time <= 0:
            return
        storage.put_scalar("images_per_sec", self.global_batch / step_time)
        self._step_times.append(step_time)
        if "data_time" in histories:  # only the main process has the gathered data time
            data_time = histories["data_time"].latest()
            storage.put_scalar("data_time_share", data_time / step_time)
            self._data_times.append(data_time)

    def after_train(self) -> None:
        if not self._step_times:
            return
        step_time = sum(self._step_times) / len(self._step_times)
        line = f"{len(self._step_times)} timed steps: {self.global_batch / step_time:.1f} images/s"
        if self._data_times:
            line += f", data time {sum(self._data_times) / len(self._data_times) / step_time:.1%} of a step"
        logger.info(line)


class SkippedImagesHook(HookBase):
    """Report the unreadable images the data loader skipped, summed over all ranks, as EventStorage scalars.

    ``data/skipped_images`` is the total since the start of training (resumed runs continue from the
    checkpoint's count) and ``data/skipped_images/<kind>`` the same per kind of
    :data:`~soco_proposals.image_io.DECODE_FAILURES`. Every ``period`` iterations, at each checkpoint
    iteration and at the last one, the ranks' counts are gathered (every rank calls this hook at the same
    iterations, so the collective never waits on a rank that skips it).
    """

    def __init__(self, period: int, checkpoint_period: int, max_iter: int):
        self.period = period
        self.checkpoint_period = checkpoint_period
        self.max_iter = max_iter
        self.resumed = np.zeros(len(DECODE_FAILURES), dtype=np.int64)  # from the checkpoint, all ranks
        self.total = self.resumed.copy()

    def _due(self, next_iter: int) -> bool:
        periodic = next_iter % self.period == 0 or next_iter % self.checkpoint_period == 0
        return periodic or next_iter == self.max_iter

    def after_step(self) -> None:
        if not self._due(self.trainer.iter + 1):
            return
        local = self.trainer.data_loader.skipped
        gathered = comm.all_gather(local.tolist()) if comm.get_world_size() > 1 else [local.tolist()]
        previous = int(self.total.sum())
        self.total = self.resumed + np.sum(np.array(gathered, dtype=np.int64), axis=0)
        storage = self.trainer.storage
        storage.put_scalar("data/skipped_images", int(self.total.sum()), smoothing_hint=False)
        for kind, count in zip(DECODE_FAILURES, self.total, strict=True):
            storage.put_scalar(f"data/skipped_images/{kind}", int(count), smoothing_hint=False)
        if self.total.sum() > previous:
            kinds = zip(DECODE_FAILURES, self.total, strict=True)
            counts = ", ".join(f"{kind} {n}" for kind, n in kinds if n)
            logger.warning("%d unreadable images skipped so far, all ranks (%s)", self.total.sum(), counts)

    def state_dict(self) -> dict:
        return {"skipped_images": dict(zip(DECODE_FAILURES, self.total.tolist(), strict=True))}

    def load_state_dict(self, state: dict) -> None:
        counts = state.get("skipped_images", {})
        self.resumed = np.array([int(counts.get(kind, 0)) for kind in DECODE_FAILURES], dtype=np.int64)
        self.total = self.resumed.copy()
