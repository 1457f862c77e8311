"""Weights for the probe encoders, always under Detectron2 suffix names, from a file or a live model.

Both go through :func:`soco.checkpoint.convert_checkpoint`, the code path of
``converters/convert_to_detectron2.py``: a training model's state dict is converted in memory (format
``soco``), a file is read in any layout the converters know (our ``.pth``, a converted ``.pkl``, the
official MoCo / SwAV / DenseCL / SoCo / torchvision releases).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from soco.checkpoint import ConversionReport, convert_checkpoint, convert_file

__all__ = ["model_weights", "read_weights"]


def model_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The online network of a pretraining model (not DDP-wrapped), converted to Detectron2 names: copies,
    which keep their values while the model trains on."""
    weights, _ = convert_checkpoint({"model": model.state_dict()}, "soco", source="the training model")
    return weights


def read_weights(path: str, trust_pickle: bool = False) -> tuple[dict[str, np.ndarray], ConversionReport]:
    """Converted weights of the checkpoint file ``path`` (format detected) and the conversion report."""
    return convert_file(path, "auto", "all", trust_pickle)
