"""soco: detection-aligned self-supervised pretraining (SoCo) and baselines on Detectron2."""

__version__ = "0.1.0"
