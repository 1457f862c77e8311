"""The pretraining engine: trainer, hooks and schedule resolution."""

from .hooks import ModelAfterBackwardHook, MomentumHook, ThroughputHook, unwrap_model
from .schedule import resolve_schedule
from .step import PretrainStepRunner, build_step_runner
from .trainer import PretrainTrainer

__all__ = [
    "ModelAfterBackwardHook",
    "MomentumHook",
    "PretrainStepRunner",
    "PretrainTrainer",
    "ThroughputHook",
    "build_step_runner",
    "resolve_schedule",
    "unwrap_model",
]
