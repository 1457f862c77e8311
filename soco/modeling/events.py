"""Logging extra metrics from inside a model."""
from __future__ import annotations

from detectron2.utils.events import get_event_storage
from torch import Tensor


def put_scalars(**scalars: Tensor | float) -> None:
    """Log metrics to Detectron2's current ``EventStorage``; nothing happens outside training."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no storage is active: a unit test or an inference call
        return
    storage.put_scalars(**{name: float(value) for name, value in scalars.items()})
