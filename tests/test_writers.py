"""soco.utils.writers: the terminal printer writes twice at one iteration (a stop at a LOG_PERIOD iteration
in the first two after a (re)start) where Detectron2's divides by zero; the trainers use it."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from detectron2.config import CfgNode
from detectron2.utils.events import CommonMetricPrinter, EventStorage, JSONWriter

from soco.engine.linear.trainer import LinearTrainer
from soco.engine.trainer import PretrainTrainer
from soco.utils.writers import MetricPrinter


def _write_twice_at_iteration_one(printer: CommonMetricPrinter) -> None:
    """What ``PeriodicWriter`` does when a stop ends iteration 1 (a LOG_PERIOD one): its ``after_step``
    writes, then its ``after_train`` writes again; IterationTimer has no ``time`` yet (warm-up)."""
    with EventStorage(start_iter=0) as storage:
        storage.iter = 1
        storage.put_scalar("total_loss", 0.5)
        printer.write()
        printer.write()


def test_detectron2s_printer_divides_by_zero_on_a_second_write_at_one_iteration():
    with pytest.raises(ZeroDivisionError):
        _write_twice_at_iteration_one(CommonMetricPrinter(max_iter=10))


def test_the_printer_writes_twice_without_an_eta(caplog):
    with caplog.at_level(logging.INFO, logger="detectron2.utils.events"):
        _write_twice_at_iteration_one(MetricPrinter(max_iter=10))
    lines = [record.getMessage() for record in caplog.records if "iter: 1" in record.getMessage()]
    assert len(lines) == 2 and all("total_loss: 0.5" in line and "eta" not in line for line in lines)


def test_the_printer_keeps_detectron2s_eta_from_the_iteration_times():
    with EventStorage(start_iter=0) as storage:
        storage.iter = 5
        storage.put_scalar("time", 2.0)
        assert MetricPrinter(max_iter=10)._get_eta(storage) == "0:00:08"  # 2 s x 4 iterations left


@pytest.mark.parametrize("trainer_class", [PretrainTrainer, LinearTrainer])
def test_the_trainers_write_with_the_safe_printer(trainer_class, tmp_path):
    trainer = SimpleNamespace(cfg=CfgNode({"OUTPUT_DIR": str(tmp_path)}), max_iter=10)
    writers = trainer_class.build_writers(trainer)
    try:
        assert [type(writer) for writer in writers][:2] == [MetricPrinter, JSONWriter]
    finally:
        for writer in writers:
            writer.close()
