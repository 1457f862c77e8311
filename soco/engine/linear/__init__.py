"""Linear classification of a frozen pretrained ResNet (the ImageNet protocol of MoCo, DenseCL, SwAV).

* ``config``: ``add_linear_config`` (``LINEAR.*``), loading and checks;
* ``model``: the frozen backbone in eval mode + one linear layer, strict weight loading;
* ``data``: the resumable training stream, every-image-once validation, cached features;
* ``trainer``: Detectron2's trainer with per-epoch lr, the frozen-backbone check and top-1 / top-5;
* ``run``: ``run_linear(args)``, what ``tools/train_linear.py`` launches.
"""

from .config import add_linear_config, load_linear_cfg
from .model import LinearClassifier, build_linear_classifier, load_backbone_weights
from .run import resolve_linear_cfg, run_linear
from .trainer import EpochwiseLR, FrozenBackboneCheck, LinearTrainer

__all__ = [
    "EpochwiseLR",
    "FrozenBackboneCheck",
    "LinearClassifier",
    "LinearTrainer",
    "add_linear_config",
    "build_linear_classifier",
    "load_backbone_weights",
    "load_linear_cfg",
    "resolve_linear_cfg",
    "run_linear",
]
