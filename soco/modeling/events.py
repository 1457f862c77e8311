"""Logging extra metrics from inside a model."""
from __future__ import annotations

from detectron2.utils.events import get_event_storage
from torch import Tensor


def training_iteration(purpose: str) -> int:
    """The trainer's current iteration (Detectron2's ``EventStorage.iter``); outside training an error
    that starts with ``purpose`` (why the caller needs the iteration)."""
    try:
        return get_event_storage().iter
    except AssertionError as err:
        raise RuntimeError(f"{purpose}, so training must run inside a Detectron2 EventStorage") from err


def put_scalars(**scalars: Tensor | float) -> None:
    """Log metrics to Detectron2's current ``EventStorage``; nothing happens outside training."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no storage is active: a unit test or an inference call
        return
    storage.put_scalars(**{name: float(value) for name, value in scalars.items()})
