"""Converted weights against the fine-tuning model a Detectron2 config builds (``soco.checkpoint.verify``
does the matching; this module builds the model, which needs the fine-tuning config)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from detectron2.modeling import build_model

from soco.checkpoint import TransferCheck, check_transfer

from .config import load_transfer_config


def check_transfer_with_config(
    weights: Mapping[str, np.ndarray], config_file: str, opts: Sequence[str] = ()
) -> TransferCheck:
    """Build the fine-tuning model of ``config_file`` (+ ``opts``) on the CPU and :func:`check_transfer`."""
    cfg = load_transfer_config(config_file, [*opts, "MODEL.DEVICE", "cpu"])
    return check_transfer(build_model(cfg).state_dict(), weights)
