"""The linear-classification trainer: Detectron2's loop, step runner, checkpointer, writers and hooks.

Hooks, in order: timer, lr (set per epoch, :class:`EpochwiseLR`), throughput, skipped images (reference
protocol), the frozen-backbone check (:class:`FrozenBackboneCheck`), checkpoints at epoch multiples,
top-1 / top-5 every ``LINEAR.EVAL_PERIOD_EPOCHS`` epochs and after the last iteration (``linear/top1``,
``linear/top5``, ``linear/val_images``, ``linear/val_skipped`` in EventStorage, TensorBoard and
metrics.json), the writers, then the pre-emption stop (:class:`soco.engine.preemption.PreemptionHook`).
"""

from __future__ import annotations

import logging
import math
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterable

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, HookBase, TrainerBase, hooks
from detectron2.solver import LRMultiplier
from detectron2.utils import comm
from fvcore.common.param_scheduler import CosineParamScheduler, ParamScheduler

from soco.checkpoint import SafeDetectionCheckpointer
from soco.solver import build_optimizer
from soco.utils.writers import training_writers

from ..distributed import wrap_ddp
from ..hooks import SkippedImagesHook, ThroughputHook
from ..preemption import PreemptionHook, preemption_signal, train_until_preempted
from ..step import build_step_runner
from .model import LinearClassifier, backbone_snapshot, changed_tensors

logger = logging.getLogger(__name__)


class EpochwiseLR(ParamScheduler):
    """The lr multiplier of ``LINEAR.LR_SCHEDULE``, constant within an epoch (MoCo / SwAV set it per epoch).

    ``step``: ``gamma ** (number of step epochs <= epoch)``; ``cosine``: fvcore's cosine from 1 to 0,
    ``(1 + cos(pi * epoch / epochs)) / 2``; ``epoch`` is ``iteration // iters_per_epoch``.
    """

    def __init__(
        self, schedule: str, iters_per_epoch: int, max_iter: int, step_epochs=(), gamma: float = 0.1
    ):
        self.schedule = schedule
        self.iters_per_epoch = iters_per_epoch
        self.max_iter = max_iter
        self.step_epochs = sorted(step_epochs)
        self.gamma = gamma
        self.epochs = math.ceil(max_iter / iters_per_epoch)
        self.cosine = CosineParamScheduler(1.0, 0.0)

    def epoch_multiplier(self, epoch: int) -> float:
        if self.schedule == "step":
            return self.gamma ** bisect_right(self.step_epochs, epoch)
        return self.cosine(epoch / self.epochs)

    def __call__(self, where: float) -> float:
        # LRMultiplier asks at where = iteration / max_iter; round() undoes the division's float error
        return self.epoch_multiplier(round(where * self.max_iter) // self.iters_per_epoch)


class FrozenBackboneCheck(HookBase):
    """MoCo's sanity check: at the end of the first epoch this run completes, and after the last
    iteration, every backbone parameter and BatchNorm statistic must equal its value when training
    started; otherwise a ``RuntimeError`` names the tensors that moved."""

    def __init__(self, model: LinearClassifier, iters_per_epoch: int):
        self.model = model
        self.iters_per_epoch = iters_per_epoch
        self.snapshot: dict[str, torch.Tensor] = {}
        self.checked_epoch = False

    def before_train(self) -> None:
        self.snapshot = backbone_snapshot(self.model)

    def _check(self, when: str) -> None:
        changed = changed_tensors(self.model, self.snapshot)
        if changed:
            raise RuntimeError(
                f"{when}: {len(changed)} backbone tensors of the frozen backbone changed "
                f"(e.g. {', '.join(changed[:5])}); the backbone must stay in eval mode without gradients"
            )
        logger.info("%s: the frozen backbone and its BatchNorm statistics are unchanged", when)

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if not self.checked_epoch and next_iter % self.iters_per_epoch == 0:
            self.checked_epoch = True
            self._check(f"epoch {next_iter // self.iters_per_epoch} (iteration {next_iter})")

    def after_train(self) -> None:
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self._check("end of training")


class LinearTrainer(DefaultTrainer):
    """Train the head of a :class:`LinearClassifier` with Detectron2's loop.

    ``build_loader(start_iter)`` returns the training stream from ``start_iter`` (images, or cached
    features); ``evaluate()`` returns ``{"top1", "top5", ...}`` over the whole validation set.
    Only the head is optimised (``SOLVER.OPTIMIZER``, SGD in the published configs); the step runs in
    fp32, bf16 or fp16 (``SOLVER.AMP``), DDP across processes; checkpoints hold the whole classifier and the
    optimizer, scheduler and iteration, so ``resume_or_load(resume=True)`` continues exactly. The
    pre-emption signal (``SOLVER.PREEMPTION_SIGNAL``) stops every process after the same iteration with a
    checkpoint, as in pretraining (``preempted_at`` is then that iteration, else None).
    """

    def __init__(
        self,
        cfg: CfgNode,
        model: LinearClassifier,
        build_loader: Callable[[int], Iterable],
        evaluate: Callable[[], dict],
    ):
        TrainerBase.__init__(self)
        self.classifier = model
        optimizer = build_optimizer(cfg, model)
        ddp_model = wrap_ddp(model, find_unused_parameters=False)
        self._trainer = build_step_runner(cfg, ddp_model, optimizer)
        solver = cfg.SOLVER
        multiplier = EpochwiseLR(
            cfg.LINEAR.LR_SCHEDULE,
            solver.ITERS_PER_EPOCH,
            solver.MAX_ITER,
            cfg.LINEAR.STEP_EPOCHS,
            solver.GAMMA,
        )
        self.scheduler = LRMultiplier(optimizer, multiplier, solver.MAX_ITER)
        self.checkpointer = SafeDetectionCheckpointer(
            ddp_model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.TRUST_PICKLE, trainer=weakref.proxy(self)
        )
        self.build_loader = build_loader
        self.evaluate = evaluate
        self.preemption_signal = preemption_signal(cfg.SOLVER.PREEMPTION_SIGNAL)
        self.preempted_at: int | None = None
        self.start_iter = 0
        self.max_iter = solver.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from ``OUTPUT_DIR/last_checkpoint`` when asked and present; the backbone weights were
        loaded when the classifier was built (``MODEL.WEIGHTS`` is not read again here)."""
        if resume and self.checkpointer.has_checkpoint():
            self.checkpointer.resume_or_load("", resume=True)
            self.start_iter = self.iter + 1

    def build_hooks(self) -> list:
        cfg, solver = self.cfg, self.cfg.SOLVER
        per_epoch = solver.ITERS_PER_EPOCH
        ret = [hooks.IterationTimer(), hooks.LRScheduler(), ThroughputHook(solver.IMS_PER_BATCH)]
        if cfg.LINEAR.PROTOCOL == "reference":
            ret.append(SkippedImagesHook(solver.LOG_PERIOD, solver.CHECKPOINT_PERIOD, solver.MAX_ITER))
        ret.append(FrozenBackboneCheck(self.classifier, per_epoch))
        if comm.is_main_process():
            ret.append(
                hooks.PeriodicCheckpointer(
                    self.checkpointer,
                    solver.CHECKPOINT_PERIOD,
                    max_to_keep=solver.CHECKPOINT_MAX_TO_KEEP or None,
                )
            )
        ret.append(hooks.EvalHook(cfg.LINEAR.EVAL_PERIOD_EPOCHS * per_epoch, self._evaluate))
        if comm.is_main_process():
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=solver.LOG_PERIOD))
        ret.append(PreemptionHook(self.checkpointer, solver.MAX_ITER))  # last: after the writers
        return ret

    def build_writers(self) -> list:
        return training_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def _evaluate(self) -> dict:
        results = self.evaluate()
        epoch = (
            min(self.iter + 1, self.max_iter) / self.cfg.SOLVER.ITERS_PER_EPOCH
        )  # iter is max_iter after training
        logger.info(
            "epoch %g: top-1 %.2f %%, top-5 %.2f %% on %d validation images (%d unreadable, left out)",
            epoch, results["top1"], results["top5"], results["val_images"], results["val_skipped"],
        )  # fmt: skip
        self.last_results = results
        return {"linear": results}

    @property
    def data_loader(self):
        """The running training stream (its ``skipped`` counts feed :class:`SkippedImagesHook`)."""
        return self._trainer.data_loader

    def train(self):
        """Attach the training stream at ``start_iter`` (0, or the resumed iteration) and run the loop; a
        pre-emption signal ends it early with ``preempted_at`` set."""
        self._trainer.data_loader = self.build_loader(self.start_iter)
        self._trainer._data_loader_iter_obj = None
        self.preempted_at = train_until_preempted(super().train, self.preemption_signal)
