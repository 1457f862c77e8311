"""Checkpoint conversion: read every supported release, write Detectron2 / torchvision weights.

* ``formats``: registry of source layouts (``auto`` detection) and their keep / drop rules;
* ``rename``: torchvision <-> Detectron2 ResNet names, original-SoCo FPN / head names;
* ``convert``: the conversion with its report, and the payloads of the written files;
* ``validate`` / ``verify``: completeness checks, and matching against a fine-tuning model's state dict
  (``soco.detection.check_transfer_with_config`` builds that model from a fine-tuning config);
* ``publish``: strip training state from our checkpoints;
* ``mmdet``: Detectron2 names to MMDetection 3.x names (``converters/convert_to_mmdetection.py``);
* ``io`` / ``checkpointer``: readers that run no code from a file (``--trust-pickle`` opts out), for
  soco and for Detectron2's ``DetectionCheckpointer``.
"""

from .checkpointer import SafeDetectionCheckpointer
from .convert import (
    KEEP_CHOICES,
    ConversionReport,
    backbone_payload,
    convert_checkpoint,
    convert_file,
    detectron2_payload,
    torchvision_payload,
)
from .formats import SOURCE_FORMATS, SourceFormat, detect_format, get_format, register_format
from .io import CheckpointReadError, load_checkpoint, save_pickle, save_safetensors, save_torch, save_weights
from .publish import publish_checkpoint
from .validate import CheckpointLayoutError, TransferArchitecture, validate_transfer_weights
from .verify import (
    PART_MODEL_KEYS,
    TransferCheck,
    check_transfer,
    transferred_parts,
)

__all__ = [
    "KEEP_CHOICES",
    "PART_MODEL_KEYS",
    "SOURCE_FORMATS",
    "CheckpointLayoutError",
    "CheckpointReadError",
    "SafeDetectionCheckpointer",
    "ConversionReport",
    "SourceFormat",
    "TransferArchitecture",
    "TransferCheck",
    "backbone_payload",
    "check_transfer",
    "convert_checkpoint",
    "convert_file",
    "detect_format",
    "detectron2_payload",
    "get_format",
    "load_checkpoint",
    "publish_checkpoint",
    "register_format",
    "save_pickle",
    "save_safetensors",
    "save_torch",
    "save_weights",
    "torchvision_payload",
    "transferred_parts",
    "validate_transfer_weights",
]
