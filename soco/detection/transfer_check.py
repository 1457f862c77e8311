"""Converted weights against the fine-tuning model a Detectron2 config builds (``soco.checkpoint.verify``
does the matching; this module builds the model, which needs the fine-tuning config)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch import nn

from soco.checkpoint import TransferCheck, check_transfer

from .config import load_transfer_config


def cpu_transfer_model(config_file: str, opts: Sequence[str] = ()) -> tuple[CfgNode, nn.Module]:
    """The fine-tuning config of ``config_file`` (+ ``opts``) with ``MODEL.DEVICE cpu`` and the model it
    builds: what converted weights are checked against."""
    cfg = load_transfer_config(config_file, [*opts, "MODEL.DEVICE", "cpu"])
    return cfg, build_model(cfg)


def check_transfer_with_config(
    weights: Mapping[str, np.ndarray], config_file: str, opts: Sequence[str] = ()
) -> TransferCheck:
    """:func:`check_transfer` of ``weights`` against the :func:`cpu_transfer_model` of ``config_file``."""
    _, model = cpu_transfer_model(config_file, opts)
    return check_transfer(model.state_dict(), weights)
