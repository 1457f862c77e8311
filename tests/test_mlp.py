"""Projector / predictor MLP."""

import pytest
import torch
from torch import nn

from soco.modeling.mlp import MLP, get_norm1d


@pytest.mark.parametrize("norm, norm_type", [("BN", nn.BatchNorm1d), ("SyncBN", nn.SyncBatchNorm)])
def test_mlp_layers_and_shapes(norm, norm_type):
    mlp = MLP(16, 32, 8, norm=norm)
    assert [type(m) for m in mlp] == [nn.Linear, norm_type, nn.ReLU, nn.Linear]
    assert mlp(torch.randn(5, 16)).shape == (5, 8)  # SyncBN runs in one CPU process too


def test_mlp_without_norm_is_moco_v2_head():
    mlp = MLP(2048, 2048, 128, norm="")
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert sum(p.numel() for p in mlp.parameters()) == 4_458_624  # MoCo v2's head size


def test_last_norm_and_errors():
    assert isinstance(MLP(4, 8, 2, norm="BN", last_norm=True)[-1], nn.BatchNorm1d)
    with pytest.raises(ValueError, match="last_norm=True needs a norm"):
        MLP(4, 8, 2, norm="", last_norm=True)
    with pytest.raises(ValueError, match="unknown 1-D norm 'GN'"):
        get_norm1d("GN", 4)
