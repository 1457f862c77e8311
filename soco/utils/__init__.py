"""Pieces every soco package and tool may import (the lowest soco layer, above ``soco_proposals``):

* ``cli``: run a command-line ``main`` with one-line errors;
* ``metrics_file``: read Detectron2's ``metrics.json``, also while a training still writes it.
* ``writers``: Detectron2's event writers for a trainer (``training_writers``).
"""

from .cli import run
from .metrics_file import read_metrics

__all__ = ["read_metrics", "run"]
