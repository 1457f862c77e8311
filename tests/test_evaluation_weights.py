"""Probe weights from a live model (``soco.evaluation.weights``): kept results are copies."""

from pathlib import Path

import numpy as np
import torch
from detectron2.modeling import build_model

from soco.engine.pretrain import load_pretrain_cfg
from soco.evaluation.weights import model_weights

TINY_SOCO_FPN = Path(__file__).resolve().parents[1] / "soco" / "configs" / "tiny" / "SoCo_FPN.yaml"


def test_kept_model_weights_do_not_follow_the_model_as_it_trains_on():
    model = build_model(load_pretrain_cfg(str(TINY_SOCO_FPN), ["MODEL.DEVICE", "cpu"]))
    kept = model_weights(model)
    before = {name: value.copy() for name, value in kept.items()}
    with torch.no_grad():  # an optimizer step and BN statistics updates write in place
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    assert "stem.conv1.weight" in kept and "fpn_output5.weight" in kept
    assert all(np.array_equal(kept[name], before[name]) for name in kept)
    moved = model_weights(model)
    assert not np.array_equal(moved["stem.conv1.weight"], before["stem.conv1.weight"])
