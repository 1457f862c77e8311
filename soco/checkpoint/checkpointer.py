"""Detectron2's ``DetectionCheckpointer`` with the safe readers of :mod:`.io`.

Detectron2 reads ``.pkl`` weights with plain ``pickle.load``, so a crafted "pretrained model" passed as
``MODEL.WEIGHTS`` would run its code. :class:`SafeDetectionCheckpointer` reads ``.pkl`` files with
:class:`~soco.checkpoint.io.WeightsUnpickler`, torch files with ``weights_only=True`` and
``.safetensors`` files with their metadata (so ``matching_heuristics`` travels inside the file);
``trust_pickle=True`` (``MODEL.TRUST_PICKLE``) restores Detectron2's unrestricted readers.
"""

from __future__ import annotations

from typing import Any

from detectron2.checkpoint import DetectionCheckpointer

from .io import load_checkpoint


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that unpickles nothing but weights unless ``trust_pickle``.

    Raises :class:`~soco.checkpoint.io.CheckpointReadError` naming the file, the refused object and
    ``MODEL.TRUST_PICKLE`` / ``--trust-pickle`` when a file holds other Python objects.
    """

    def __init__(self, *args: Any, trust_pickle: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trust_pickle = trust_pickle

    def _load_file(self, filename: str) -> dict[str, Any]:
        if self.trust_pickle or not filename.endswith(".pkl"):
            return super()._load_file(filename)  # torch files come back through _torch_load
        data = load_checkpoint(filename)
        # Detectron2's own reading of a .pkl (detectron2/checkpoint/detection_checkpoint.py, _load_file)
        if "model" in data and "__author__" in data:  # Detectron2 model zoo format
            self.logger.info(f"Reading a file from '{data['__author__']}'")
            return data
        if "blobs" in data:  # Caffe2 / Detectron1 detection models; their ImageNet models have no "blobs"
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f: str) -> dict[str, Any]:
        """A torch or ``.safetensors`` file as ``{"model": ..., **other entries}`` (Detectron2 wraps a
        bare state dict and applies a ``?matching_heuristics=True`` query afterwards)."""
        return load_checkpoint(f, trust_pickle=self.trust_pickle)
