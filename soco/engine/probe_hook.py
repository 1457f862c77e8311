"""Probe the representation during pretraining: kNN and linear probes of the current online weights.

The results go to EventStorage at the iteration whose weights they measure (the number of finished steps:
0 is the initialisation, ``MAX_ITER`` the final model, like the loss logged at iteration i is that of the
weights after i steps), hence to ``metrics.json`` and TensorBoard, and one line goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from detectron2.config import CfgNode
from detectron2.engine import HookBase
from detectron2.utils.events import EventWriter
from torch import nn

from soco.evaluation import ProbeData, ProbeEvaluator, ProbeSettings, check_probe_config, model_weights
from soco.evaluation.probes import format_results

from .hooks import unwrap_model

__all__ = ["ModelProbes", "ProbeHook", "build_probe_hook", "probe_iterations"]

logger = logging.getLogger(__name__)


def probe_iterations(period: int, max_iter: int, start_iter: int = 0) -> list[int]:
    """The iterations (finished steps) a run from ``start_iter`` to ``max_iter`` probes at: 0 when it starts
    there, every multiple of ``period``, and ``max_iter``."""
    due = {it for it in range(start_iter + 1, max_iter + 1) if it % period == 0 or it == max_iter}
    return sorted(due | ({0} if start_iter == 0 else set()))


class ProbeHook(HookBase):
    """Every ``period`` steps (and before the first, and after the last), ``evaluate`` the model's weights.

    ``evaluate(model) -> {"probe/...": value}`` runs in every process at the same iterations (it gathers
    features across processes). ``writers``: the main process's event files (JSON, TensorBoard), flushed
    before new results are put so that results are never replaced before they are written when the probe
    period is shorter than the writers'. Register it after Detectron2's ``PeriodicWriter``: results put
    after step i belong to iteration i + 1, which a writer must not flush before storing step i + 1's scalars.
    """

    def __init__(
        self,
        evaluate: Callable[..., Mapping[str, float]],
        period: int,
        max_iter: int,
        writers: Sequence[EventWriter] = (),
    ):
        self.evaluate = evaluate
        self.period = period
        self.max_iter = max_iter
        self.writers = list(writers)
        self._due: set[int] = set()

    def _probe(self, iteration: int) -> None:
        for writer in self.writers:
            writer.write()
        results = self.evaluate(unwrap_model(self.trainer.model))
        self.trainer.storage.put_scalars(**results, smoothing_hint=False, cur_iter=iteration)
        logger.info("probes at iteration %d: %s", iteration, format_results(results))

    def before_train(self) -> None:
        # a resumed run was probed at its start already: no row at the resumed iteration
        self._due = set(probe_iterations(self.period, self.max_iter, start_iter=self.trainer.iter))
        if 0 in self._due:
            self._probe(0)

    def after_step(self) -> None:
        finished = self.trainer.iter + 1
        if finished in self._due:
            self._probe(finished)


class ModelProbes:
    """``probes(model)``: the evaluator's results on the online weights of ``model``, converted in memory."""

    def __init__(self, evaluator: ProbeEvaluator):
        self.evaluator = evaluator

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return self.evaluator(model_weights(model))


def build_probe_hook(cfg: CfgNode, writers: Sequence[EventWriter] = ()) -> ProbeHook:
    """The hook of ``PRETRAIN.EVAL_PERIOD`` and ``PRETRAIN.PROBES.*`` (their data indexed now)."""
    check_probe_config(cfg)
    settings = ProbeSettings.from_config(cfg)
    data = ProbeData.from_config(cfg, settings)
    logger.info("probes every %d iterations: %s", cfg.PRETRAIN.EVAL_PERIOD, data.describe())
    evaluator = ProbeEvaluator(data, settings, cfg.MODEL.DEVICE, cfg.MODEL.RESNETS.STRIDE_IN_1X1)
    return ProbeHook(ModelProbes(evaluator), cfg.PRETRAIN.EVAL_PERIOD, cfg.SOLVER.MAX_ITER, writers)
