"""The pretraining engine: trainer, hooks and schedule resolution."""

from .hooks import ModelAfterBackwardHook, MomentumHook, ThroughputHook, unwrap_model
from .schedule import resolve_schedule
from .trainer import PretrainTrainer, build_step_runner

__all__ = [
    "ModelAfterBackwardHook",
    "MomentumHook",
    "PretrainTrainer",
    "ThroughputHook",
    "build_step_runner",
    "resolve_schedule",
    "unwrap_model",
]
