"""Checkpoints written before the SoCo model was split into steps still load and convert to the same .pkl.

The "old" checkpoint is assembled without the SoCo classes, from Detectron2's own builders (backbone, box
head or res5 stage) and the MLPs, under the names the model has always used (``backbone.*``,
``roi_heads.box_head.*`` / ``roi_heads.res5.*``, ``projector.*``, ``predictor.*``, ``target.*``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.roi_heads import Res5ROIHeads, build_box_head
from scripts_testing import load_script
from soco_testing import tiny_cfg

from soco.checkpoint import load_checkpoint
from soco.modeling import MLP


def _convert_to_detectron2(source: Path, output: Path) -> dict[str, np.ndarray]:
    script = load_script("converters/convert_to_detectron2.py")
    assert script.main([str(source), str(output)]) == 0
    return load_checkpoint(str(output))["model"]


def _prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": value for name, value in module.state_dict().items()}


def _old_layout_state(variant: str, seed: int) -> dict[str, torch.Tensor]:
    """Online and target weights of a SoCo checkpoint in the layout written before the split, every float
    tensor random (BN statistics included), the target different from the online weights.
    """
    cfg = tiny_cfg(variant)
    head = cfg.SOCO.HEAD
    if variant == "fpn":
        size, channels = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION, cfg.MODEL.FPN.OUT_CHANNELS
        box_head = build_box_head(cfg, ShapeSpec(channels=channels, height=size, width=size))
        roi_heads, features = _prefixed("roi_heads.box_head.", box_head), box_head.output_shape.channels
    else:
        res5, features = Res5ROIHeads._build_res5_block(cfg)
        roi_heads = _prefixed("roi_heads.res5.", res5)
    hidden, out, norm = head.MLP_HIDDEN_DIM, head.MLP_OUT_DIM, head.MLP_NORM
    online = {
        **_prefixed("backbone.", build_backbone(cfg)),
        **roi_heads,
        **_prefixed("projector.", MLP(features, hidden, out, norm=norm)),
        **_prefixed("predictor.", MLP(out, hidden, out, norm=norm)),
    }
    target = {f"target.{k}": v for k, v in online.items() if not k.startswith("predictor.")}
    generator = torch.Generator().manual_seed(seed)
    return {
        key: (torch.rand(value.shape, generator=generator) + 0.5) if value.is_floating_point() else value
        for key, value in {**online, **target}.items()
    }


@pytest.mark.parametrize("variant", ["fpn", "c4"])
def test_old_checkpoint_loads_strictly_and_converts_to_the_same_pkl(tmp_path, variant):
    old_state = _old_layout_state(variant, seed=7)
    old_file = tmp_path / "old_model_final.pth"
    torch.save({"model": old_state, "iteration": 9}, old_file)

    model = build_model(tiny_cfg(variant))
    model.load_state_dict(torch.load(old_file)["model"], strict=True)
    assert list(model.state_dict()) == list(old_state)  # same names, same order
    DetectionCheckpointer(model, str(tmp_path)).save("model_final", iteration=9)
    saved = torch.load(tmp_path / "model_final.pth")["model"]
    for key, value in old_state.items():
        assert torch.equal(saved[key], value), key

    old_pkl = _convert_to_detectron2(old_file, tmp_path / "old.pkl")
    new_pkl = _convert_to_detectron2(tmp_path / "model_final.pth", tmp_path / "new.pkl")
    assert list(new_pkl) == list(old_pkl)
    assert any(k.startswith("box_head." if variant == "fpn" else "res5.") for k in new_pkl)
    for key, value in old_pkl.items():
        assert new_pkl[key].dtype == value.dtype and np.array_equal(new_pkl[key], value), key
