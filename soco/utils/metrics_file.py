"""The one reader of Detectron2's ``metrics.json`` (``JSONWriter``: one JSON object per line, appended)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.json`` in file order (a resumed run repeats iterations; callers decide).

    Blank lines are skipped. A last line without its newline that is not valid JSON is a record the
    training is still writing: it is left out, with a log line. Any other line that is not a JSON object
    is an error naming the file and the line number. Values are as written (Detectron2 writes NaN as
    ``NaN``, read here as ``float("nan")``).
    """
    with open(path) as f:
        lines = f.read().split("\n")
    # split("\n") leaves "" after a final newline; anything else in the last slot was cut mid-write.
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                logger.warning("%s: left out 1 partial last line (still being written): %.60s", path, line)
                continue
            raise ValueError(f"{path}:{number}: not a JSON line ({e})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a JSON {type(record).__name__}, expected an object")
        records.append(record)
    return records
