"""Extract the online backbone of a pretraining checkpoint under Detectron2 ResNet names.

Writes ``{"model": {stem.*, res2..5.*} tensors, "__author__": "soco", "matching_heuristics": True}``.
A Detectron2 ``ResNet`` built by ``build_resnet_backbone`` (``OUT_FEATURES`` up to res5) loads
``ckpt["model"]`` with ``load_state_dict`` directly, which is what linear probes and kNN evaluation
need; ``DetectionCheckpointer`` also loads it into a detector.

  python converters/extract_backbone_weights.py output/soco_c4_100ep/model_final.pth soco_c4_backbone.pth
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from soco.checkpoint import backbone_payload, save_weights
from soco.checkpoint.cli import write_backbone
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    return write_backbone(
        argv,
        __doc__,
        "backbone weights to write (a torch file, or .safetensors)",
        backbone_payload,
        save_weights,
    )


if __name__ == "__main__":
    sys.exit(run(main))
