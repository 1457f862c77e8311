"""Detectron2's event writers for soco's trainers, with the terminal printer safe to call twice at one
iteration."""

from __future__ import annotations

from detectron2.engine.defaults import default_writers
from detectron2.utils.events import CommonMetricPrinter, EventStorage, EventWriter


class MetricPrinter(CommonMetricPrinter):
    """Detectron2's ``CommonMetricPrinter`` whose ETA survives a second write at the same iteration.

    Without a ``time`` history (``IterationTimer`` records it from the third iteration after a (re)start),
    Detectron2 estimates the ETA as the seconds since its last write over the iterations since then: zero
    iterations when ``PeriodicWriter.after_train`` writes again at the iteration a stop ended on (a
    pre-emption at a ``LOG_PERIOD`` iteration in the first two after a (re)start), and the job failed with
    ``ZeroDivisionError`` after its checkpoint was saved. Such a repeated write prints no ETA.
    """

    def _get_eta(self, storage: EventStorage) -> str | None:
        repeated = self._last_write is not None and self._last_write[0] == storage.iter
        if repeated and "time" not in storage.histories():
            return None
        return super()._get_eta(storage)


def training_writers(output_dir: str, max_iter: int) -> list[EventWriter]:
    """Detectron2's ``default_writers`` (terminal, ``metrics.json``, TensorBoard) with :class:`MetricPrinter`
    as the terminal one."""
    writers = default_writers(output_dir, max_iter)
    return [MetricPrinter(max_iter) if type(writer) is CommonMetricPrinter else writer for writer in writers]
