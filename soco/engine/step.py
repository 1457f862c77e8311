"""One optimization step, in fp32 or under autocast (bf16, or fp16 with a gradient scaler)."""

from __future__ import annotations

import logging
import time

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import get_event_storage
from torch import nn

logger = logging.getLogger(__name__)

AMP_PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_precision(cfg: CfgNode) -> torch.dtype | None:
    """The autocast dtype ``SOLVER.AMP`` asks for on ``MODEL.DEVICE``, or None for fp32.

    float16 on a CPU device is turned off with a warning: CPUs without fp16 arithmetic emulate it (about
    15x slower than fp32 on the test machine), so every published config still runs there. bfloat16 runs
    on CPU (autocast's native CPU dtype).
    """
    amp = cfg.SOLVER.AMP
    if not amp.ENABLED:
        return None
    if amp.PRECISION not in AMP_PRECISIONS:
        raise ValueError(f"SOLVER.AMP.PRECISION must be one of {list(AMP_PRECISIONS)}, got {amp.PRECISION!r}")
    precision = AMP_PRECISIONS[amp.PRECISION]
    if precision == torch.float16 and not cfg.MODEL.DEVICE.startswith("cuda"):
        logger.warning(
            "SOLVER.AMP with PRECISION float16 is ignored on device %s (fp16 needs CUDA; "
            "SOLVER.AMP.PRECISION bfloat16 runs on CPU)",
            cfg.MODEL.DEVICE,
        )
        return None
    return precision


class PretrainStepRunner(SimpleTrainer):
    """Detectron2's ``SimpleTrainer`` step with optional autocast, on any device.

    * ``precision`` None: fp32, exactly ``SimpleTrainer``.
    * bfloat16: autocast, no loss scaling (bf16 has fp32's range).
    * float16: autocast and ``grad_scaler``. ``GradScaler.step`` unscales the gradients before calling the
      optimizer, so LARS computes its trust ratio on the true gradients (it mixes g with wd * w); a step
      whose gradients hold inf/nan is skipped by the scaler and counted (``amp/skipped_steps``, cumulative
      and checkpointed, with ``amp/loss_scale``).

    Models keep their own fp32 islands inside the autocast region (SoCo's RoIAlign and loss).
    Unlike ``AMPTrainer`` this needs no CUDA, so the AMP paths are tested on CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        precision: torch.dtype | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
        device_type: str = "cuda",
    ):
        super().__init__(model, data_loader, optimizer)
        if grad_scaler is not None and precision != torch.float16:
            raise ValueError("a gradient scaler is only needed (and used) for float16 autocast")
        self.precision = precision
        self.grad_scaler = grad_scaler
        self.device_type = device_type
        self.skipped_steps = 0

    def run_step(self) -> None:
        assert self.model.training, "[PretrainStepRunner] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        autocast_dtype = self.precision or torch.float32
        with torch.autocast(self.device_type, dtype=autocast_dtype, enabled=self.precision is not None):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
            self.after_backward()
            self._write_metrics(loss_dict, data_time)
            self.optimizer.step()
            return
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        scale = self.grad_scaler.get_scale()
        self.grad_scaler.step(self.optimizer)  # unscale_, then optimizer.step() unless a gradient is inf/nan
        self.grad_scaler.update()  # lowers the scale exactly when the step was skipped
        if self.grad_scaler.get_scale() < scale:
            self.skipped_steps += 1
            logger.info(
                "iteration %d: inf/nan gradients at loss scale %g, step skipped (%d so far)",
                self.iter,
                scale,
                self.skipped_steps,
            )
        get_event_storage().put_scalars(
            **{"amp/loss_scale": self.grad_scaler.get_scale(), "amp/skipped_steps": self.skipped_steps},
            smoothing_hint=False,
        )

    def state_dict(self) -> dict:
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
            ret["amp_skipped_steps"] = self.skipped_steps
        return ret

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler is None:
            return
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
            self.skipped_steps = state_dict.get("amp_skipped_steps", 0)
        else:
            logger.info("the checkpoint has no gradient-scaler state (no fp16 run): the scaler starts anew")


def build_step_runner(cfg: CfgNode, model: nn.Module, optimizer: torch.optim.Optimizer) -> PretrainStepRunner:
    """The step runner ``SOLVER.AMP`` asks for (see :func:`amp_precision`); float16 gets a GradScaler.

    The data loader is attached later, by :meth:`PretrainTrainer.train`, once the start iteration is known.
    """
    precision = amp_precision(cfg)
    device_type = torch.device(cfg.MODEL.DEVICE).type
    scaler = torch.amp.GradScaler(device_type) if precision == torch.float16 else None
    return PretrainStepRunner(model, None, optimizer, precision, scaler, device_type)
