"""The pretraining trainer: Detectron2's ``DefaultTrainer`` with a pretraining model, loader and hooks."""

from __future__ import annotations

import weakref

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter
from torch import nn

from soco.checkpoint import SafeDetectionCheckpointer
from soco.data.build import build_pretrain_train_loader
from soco.solver import build_optimizer

from .distributed import check_sync_norms_can_run, wrap_ddp
from .fast_path import apply_fast_path
from .hooks import ModelAfterBackwardHook, MomentumHook, SkippedImagesHook, ThroughputHook, unwrap_model
from .probe_hook import build_probe_hook
from .step import build_step_runner


class PretrainTrainer(DefaultTrainer):
    """Self-supervised pretraining with Detectron2's loop, checkpointer, writers and hooks.

    Differences from ``DefaultTrainer``: the model is any pretraining meta-architecture, optionally in
    channels_last order with compiled backbones (:mod:`.fast_path`), the optimizer comes from
    :mod:`soco.solver` (LARS/SGD), DDP runs on CPU too and may have unused parameters, the step runs in
    fp32, bf16 or fp16 on any device (:mod:`.step`), the data stream is resumed at the checkpoint's
    iteration, the only evaluation is the probes of ``PRETRAIN.EVAL_PERIOD`` (:mod:`.probe_hook`), and the
    momentum (target) network is updated before every step.
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        model = apply_fast_path(cfg, self.build_model(cfg))
        check_sync_norms_can_run(model, torch.device(cfg.MODEL.DEVICE))
        optimizer = self.build_optimizer(cfg, model)
        model = wrap_ddp(model, find_unused_parameters=cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS)
        self._trainer = build_step_runner(cfg, model, optimizer)
        if hasattr(unwrap_model(model), "after_backward"):
            self._trainer.register_hooks([ModelAfterBackwardHook()])
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.TRUST_PICKLE, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, start_iter: int = 0):
        return build_pretrain_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        raise NotImplementedError("pretraining has no evaluation; fine-tune with tools/train_net.py")

    def build_hooks(self) -> list:
        cfg = self.cfg
        model = unwrap_model(self.model)
        ret = [hooks.IterationTimer(), hooks.LRScheduler()]
        if hasattr(model, "momentum_update"):
            momentum = cfg.PRETRAIN.MOMENTUM
            ret.append(MomentumHook(momentum.BASE, momentum.SCHEDULE, cfg.SOLVER.MAX_ITER))
        ret.append(ThroughputHook(cfg.SOLVER.IMS_PER_BATCH))
        # before the checkpointer, so that a checkpoint holds the count of its own iteration
        solver = cfg.SOLVER
        ret.append(SkippedImagesHook(solver.LOG_PERIOD, solver.CHECKPOINT_PERIOD, solver.MAX_ITER))
        if comm.is_main_process():
            ret.append(
                hooks.PeriodicCheckpointer(
                    self.checkpointer,
                    cfg.SOLVER.CHECKPOINT_PERIOD,
                    max_to_keep=cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP or None,
                )
            )
            writers = self.build_writers()
            ret.append(hooks.PeriodicWriter(writers, period=cfg.SOLVER.LOG_PERIOD))
        if cfg.PRETRAIN.EVAL_PERIOD > 0:
            # after the writers (see ProbeHook); every process probes, the main one flushes its event files
            main = comm.is_main_process()
            files = [w for w in writers if not isinstance(w, CommonMetricPrinter)] if main else []
            ret.append(build_probe_hook(cfg, files))
        return ret

    @property
    def data_loader(self):
        """The data stream of the running training (a :class:`soco.data.build.PretrainLoader`)."""
        return self._trainer.data_loader

    def train(self):
        """Attach the data stream at ``start_iter`` (0, or the resumed iteration) and run the loop."""
        self._trainer.data_loader = self.build_train_loader(self.cfg, start_iter=self.start_iter)
        self._trainer._data_loader_iter_obj = None
        super().train()
