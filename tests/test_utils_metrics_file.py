"""Reading Detectron2's metrics.json, finished or still being written (``soco.utils.metrics_file``)."""

import json
import logging
import math

import pytest

from soco.utils.metrics_file import read_metrics

RECORDS = [
    {"iteration": 19, "total_loss": 2.5},
    {"iteration": 39, "total_loss": 2.25, "bbox/AP": float("nan")},
]


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_finished_file_gives_every_record_in_order(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(_lines(RECORDS))
    records = read_metrics(path)
    assert [r["iteration"] for r in records] == [19, 39]
    assert records[0] == RECORDS[0] and math.isnan(records[1]["bbox/AP"])


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("\n" + json.dumps(RECORDS[0]) + "\n\n   \n" + json.dumps(RECORDS[1]) + "\n\n")
    assert [r["iteration"] for r in read_metrics(path)] == [19, 39]


def test_partial_last_line_of_a_live_file_is_left_out_and_logged(tmp_path, caplog):
    path = tmp_path / "metrics.json"
    path.write_text(_lines(RECORDS) + '{"iteration": 59, "total_lo')
    with caplog.at_level(logging.WARNING, logger="soco.utils.metrics_file"):
        records = read_metrics(path)
    assert [r["iteration"] for r in records] == [19, 39]
    assert "left out 1 partial last line" in caplog.text


def test_complete_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(_lines(RECORDS[:1]) + json.dumps(RECORDS[1]))
    assert [r["iteration"] for r in read_metrics(path)] == [19, 39]


def test_broken_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"iteration": 3' + "\n" + json.dumps(RECORDS[1]) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: not a JSON line"):
        read_metrics(path)
    # a cut line followed by its newline was not cut by a live writer
    path.write_text(_lines(RECORDS) + '{"iteration": 5\n')
    with pytest.raises(ValueError, match=rf"{path}:3: not a JSON line"):
        read_metrics(path)


def test_a_line_that_is_not_an_object_is_an_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(_lines(RECORDS[:1]) + "[1, 2]\n")
    with pytest.raises(ValueError, match=rf"{path}:2: a JSON list, expected an object"):
        read_metrics(path)
