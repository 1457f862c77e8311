"""Momentum networks: frozen copy, EMA over parameters only, tau schedule."""

import math

import pytest
import torch
from torch import nn

from soco.modeling.momentum import create_target, ema_update_, momentum_at


def test_create_target_is_a_frozen_copy():
    online = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    target = create_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for a, b in zip(online.state_dict().values(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    online[0].weight.data.add_(1.0)
    assert not torch.equal(online[0].weight, target[0].weight), "the copy must not share storage"


def test_ema_update_moves_parameters_not_buffers():
    online = nn.BatchNorm1d(2)
    target = create_target(online)
    online.weight.data.fill_(3.0)
    online.running_mean.fill_(5.0)
    ema_update_(target, online, tau=0.75)
    torch.testing.assert_close(target.weight.data, torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
    torch.testing.assert_close(target.running_mean, torch.zeros(2))


def test_ema_update_rejects_mismatched_modules():
    with pytest.raises(ValueError, match="target has"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)


def test_cosine_schedule_from_base_to_one():
    assert momentum_at(0.99, "cosine", 0, 100) == pytest.approx(0.99)
    assert momentum_at(0.99, "cosine", 50, 100) == pytest.approx(0.995)
    assert momentum_at(0.99, "cosine", 100, 100) == pytest.approx(1.0)
    assert momentum_at(0.99, "cosine", 25, 100) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert momentum_at(0.999, "constant", 77, 100) == 0.999
    with pytest.raises(ValueError, match="unknown momentum schedule"):
        momentum_at(0.99, "linear", 0, 10)
