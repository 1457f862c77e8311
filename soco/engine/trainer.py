"""The pretraining trainer: Detectron2's ``DefaultTrainer`` with a pretraining model, loader and hooks."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter
from torch import nn

from soco.checkpoint import SafeDetectionCheckpointer
from soco.data.build import build_pretrain_train_loader
from soco.solver import build_optimizer
from soco.utils.writers import training_writers

from .distributed import check_sync_norms_can_run, wrap_ddp
from .fast_path import apply_fast_path
from .hooks import ModelAfterBackwardHook, MomentumHook, SkippedImagesHook, ThroughputHook, unwrap_model
from .preemption import PreemptionHook, preemption_signal, train_until_preempted
from .probe_hook import build_probe_hook
from .step import build_step_runner

logger = logging.getLogger(__name__)

#: What a resumed run must share with the run that wrote the checkpoint, as resolved (batch, lr, schedule,
#: data seed): with them the resumed run continues the same lr curve at the same sample of the stream.
RESUME_KEYS = (
    "SEED",
    "SOLVER.IMS_PER_BATCH",
    "SOLVER.BASE_LR",
    "SOLVER.LR_SCHEDULER_NAME",
    "SOLVER.MAX_ITER",
    "SOLVER.WARMUP_ITERS",
    "SOLVER.STEPS",
)


def resume_settings(cfg: CfgNode) -> dict[str, Any]:
    """``{key: resolved value}`` of :data:`RESUME_KEYS` (every checkpoint holds them: trainer.schedule)."""
    settings = {}
    for key in RESUME_KEYS:
        value = cfg
        for part in key.split("."):
            value = value[part]
        settings[key] = list(value) if isinstance(value, (list, tuple)) else value
    return settings


def check_resume_settings(saved: Mapping[str, Any], current: Mapping[str, Any], checkpoint: str) -> None:
    """Refuse to resume from ``checkpoint`` (saved settings ``saved``) with other ``current`` settings,
    naming each differing key with both values: the data stream would restart at another sample
    (``start_iter`` x another global batch) or the lr curve would jump."""
    differing = [key for key in RESUME_KEYS if key in saved and saved[key] != current[key]]
    if differing:
        listed = "; ".join(
            f"{key} {current[key]!r} here, {saved[key]!r} in the checkpoint" for key in differing
        )
        raise ValueError(
            f"cannot resume from {checkpoint}: {listed}. Resume with the checkpoint's values (a global batch "
            "set by SOLVER.IMS_PER_GPU or SOLVER.REFERENCE_WORLD_SIZE: on as many processes as before), "
            "or start a new OUTPUT_DIR from its weights (MODEL.WEIGHTS)"
        )


class AtomicCheckpointer(SafeDetectionCheckpointer):
    """``SafeDetectionCheckpointer`` whose files appear whole or not at all.

    fvcore writes ``model_XXXXXXX.pth`` and ``last_checkpoint`` in place; a job killed mid-write (the
    grace time after a pre-emption warning ran out) would leave a truncated file that ``--resume`` then
    fails on. Here each goes to a temporary name first and is renamed over the target (``os.replace``):
    ``last_checkpoint`` always names a complete checkpoint. Same names and contents as fvcore's.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        with _replaced_on_close(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with _replaced_on_close(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)


class _replaced_on_close:  # noqa: N801  (used as a context manager, like open)
    """``open(path + ".tmp", mode)``; on a clean exit the data is flushed to disk and the file renamed to
    ``path``; on an error the temporary file is removed."""

    def __init__(self, path: str, mode: str):
        self.path, self.tmp = path, f"{path}.tmp"
        self.file = open(self.tmp, mode)  # noqa: SIM115  (closed in __exit__)

    def __enter__(self):
        return self.file

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        if error_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


class PretrainTrainer(DefaultTrainer):
    """Self-supervised pretraining with Detectron2's loop, checkpointer, writers and hooks.

    Differences from ``DefaultTrainer``: the model is any pretraining meta-architecture, optionally in
    channels_last order with compiled backbones (:mod:`.fast_path`), the optimizer comes from
    :mod:`soco.solver` (LARS/SGD), DDP runs on CPU too and may have unused parameters, the step runs in
    fp32, bf16 or fp16 on any device (:mod:`.step`), the data stream is resumed at the checkpoint's
    iteration, the only evaluation is the probes of ``PRETRAIN.EVAL_PERIOD`` (:mod:`.probe_hook`), the
    momentum (target) network is updated before every step, checkpoints are written atomically and record
    :func:`resume_settings` (a resume with other ones is refused), and the pre-emption signal
    (``SOLVER.PREEMPTION_SIGNAL``) stops every process after the same iteration with a checkpoint
    (:mod:`.preemption`; ``preempted_at`` is then that iteration, else None).
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
        self.checkpointer = AtomicCheckpointer(
            model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.TRUST_PICKLE, trainer=weakref.proxy(self)
        )
        self.preemption_signal = preemption_signal(cfg.SOLVER.PREEMPTION_SIGNAL)
        self.preempted_at: int | None = None
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

    def build_writers(self) -> list:
        return training_writers(self.cfg.OUTPUT_DIR, self.max_iter)

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
        ret.append(PreemptionHook(self.checkpointer, cfg.SOLVER.MAX_ITER))  # last: after the writers
        return ret

    @property
    def data_loader(self):
        """The data stream of the running training (a :class:`soco.data.build.PretrainLoader`)."""
        return self._trainer.data_loader

    def state_dict(self) -> dict:
        return {**super().state_dict(), "schedule": resume_settings(self.cfg)}

    def load_state_dict(self, state_dict: dict) -> None:
        if "schedule" in state_dict:
            checkpoint = self.checkpointer.get_checkpoint_file()
            check_resume_settings(state_dict["schedule"], resume_settings(self.cfg), checkpoint)
        else:
            logger.warning("the checkpoint records no schedule (written before soco saved it): not checked")
        super().load_state_dict(state_dict)

    def train(self):
        """Attach the data stream at ``start_iter`` (0, or the resumed iteration) and run the loop; a
        pre-emption signal ends it early with ``preempted_at`` set."""
        self._trainer.data_loader = self.build_train_loader(self.cfg, start_iter=self.start_iter)
        self._trainer._data_loader_iter_obj = None
        self.preempted_at = train_until_preempted(super().train, self.preemption_signal)
