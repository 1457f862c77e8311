"""LARS against a hand computation, parameter groups, and the optimizer registry."""

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from soco.config import add_soco_config
from soco.solver import LARS, build_optimizer, build_param_groups


def test_lars_step_matches_hand_computation():
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    bias = nn.Parameter(torch.tensor([1.0]))
    opt = LARS(
        [
            {"params": [weight], "weight_decay": 0.1, "lars_adapt": True},
            {"params": [bias], "weight_decay": 0.0, "lars_adapt": False},
        ],
        lr=2.0,
        momentum=0.9,
        trust_coefficient=0.001,
        eps=1e-8,
    )
    weight.grad = torch.tensor([[0.0, 1.0]])
    bias.grad = torch.tensor([0.5])
    opt.step()
    update = torch.tensor([[0.3, 1.4]])  # g + wd * w
    ratio = 0.001 * 5.0 / (torch.linalg.vector_norm(update) + 1e-8)
    expected_w = torch.tensor([[3.0, 4.0]]) - 2.0 * ratio * update
    torch.testing.assert_close(weight.data, expected_w)
    torch.testing.assert_close(bias.data, torch.tensor([1.0 - 2.0 * 0.5]))  # plain SGD, no adaptation

    # Second step: momentum buffer = 0.9 * previous + new (scaled) update.
    weight.grad = torch.tensor([[0.0, 1.0]])
    bias.grad = torch.tensor([0.5])
    before = weight.data.clone()
    opt.step()
    update2 = torch.tensor([[0.0, 1.0]]) + 0.1 * before
    ratio2 = 0.001 * torch.linalg.vector_norm(before) / torch.linalg.vector_norm(update2)
    expected_w2 = before - 2.0 * (0.9 * ratio * update + ratio2 * update2)
    torch.testing.assert_close(weight.data, expected_w2)
    torch.testing.assert_close(bias.data, torch.tensor([0.0 - 2.0 * (0.9 * 0.5 + 0.5)]))


def test_lars_skips_adaptation_for_zero_weights():
    weight = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([weight], lr=1.0, momentum=0.0)
    weight.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(weight.data, -torch.ones(2, 2))


def test_param_groups_split_1d_parameters_and_skip_frozen():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    groups = build_param_groups(model, weight_decay=1e-5, weight_decay_1d=0.0, adapt_1d=False)
    matrices, vectors = groups
    assert [p.shape for p in matrices["params"]] == [torch.Size([4, 3])]
    assert len(vectors["params"]) == 4  # linear bias, BN weight and bias, last bias
    assert (matrices["weight_decay"], matrices["lars_adapt"]) == (1e-5, True)
    assert (vectors["weight_decay"], vectors["lars_adapt"]) == (0.0, False)


def test_build_optimizer_by_name():
    cfg = get_cfg()
    add_soco_config(cfg)
    model = nn.Linear(2, 2)
    assert isinstance(build_optimizer(cfg, model), LARS)
    cfg.SOLVER.OPTIMIZER = "SGD"
    assert type(build_optimizer(cfg, model)) is torch.optim.SGD
    cfg.SOLVER.OPTIMIZER = "Adam"
    with pytest.raises(KeyError, match="'Adam' is not registered"):
        build_optimizer(cfg, model)


@pytest.mark.parametrize(
    "key, value, instead",
    [("WEIGHT_DECAY_NORM", 1e-4, "SOLVER.WEIGHT_DECAY_1D"),
     ("WEIGHT_DECAY_BIAS", 0.0, "SOLVER.WEIGHT_DECAY_1D"),
     ("BIAS_LR_FACTOR", 2.0, "SOLVER.LARS.ADAPT_1D_PARAMS")],
)  # fmt: skip
def test_detectron2_parameter_group_keys_are_refused_naming_what_pretraining_uses(key, value, instead):
    cfg = get_cfg()
    add_soco_config(cfg)
    setattr(cfg.SOLVER, key, value)
    with pytest.raises(ValueError, match=rf"SOLVER.{key}={value!r} is not used in pretraining.*{instead}"):
        build_optimizer(cfg, nn.Linear(2, 2))


@pytest.mark.parametrize("optimizer", ["SGD", "LARS"])
def test_gradient_clipping_is_honoured(optimizer):
    """SOLVER.CLIP_GRADIENTS (Detectron2's per-parameter value clipping) before the step: the gradient
    1000 x (1, 0.001, 2) becomes (0.01, 0.01, 0.01), so the update is the same for every weight (plain SGD:
    lr x CLIP_VALUE; LARS rescales the clipped gradient as a whole)."""
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR = optimizer, 0.5
    cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY = 0.0, 0.0
    steps = {}
    for enabled in (False, True):
        cfg.SOLVER.CLIP_GRADIENTS.ENABLED, cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = enabled, 0.01
        model = nn.Linear(3, 1, bias=False)
        start = model.weight.detach().clone()
        opt = build_optimizer(cfg, model)
        (1000.0 * model(torch.tensor([[1.0, 0.001, 2.0]])).sum()).backward()
        opt.step()
        steps[enabled] = (start - model.weight.detach()).view(-1)
    clipped, unclipped = steps[True], steps[False]
    torch.testing.assert_close(clipped, clipped[:1].expand(3))
    assert unclipped[2] > 1.5 * unclipped[0] > 1000 * unclipped[1] > 0
    if optimizer == "SGD":
        torch.testing.assert_close(clipped, torch.full((3,), 0.5 * 0.01))


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_foreach_lars_equals_the_per_parameter_loop(weight_decay):
    torch.manual_seed(0)
    shapes = [(8, 4, 3, 3), (8,), (5, 8), (5,), (3, 3)]
    per_param = [nn.Parameter(torch.randn(shape)) for shape in shapes]
    with torch.no_grad():
        per_param[-1].zero_()  # a zero weight: no adaptation (ratio 1)
    foreach = [nn.Parameter(p.detach().clone()) for p in per_param]

    def make(params, use_foreach):
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lars_adapt": True},
            {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0, "lars_adapt": False},
        ]
        return LARS(groups, lr=0.5, momentum=0.9, foreach=use_foreach)

    optimizers = make(per_param, False), make(foreach, True)
    for step in range(3):
        grads = [torch.randn(shape) for shape in shapes]
        for params, optimizer in zip((per_param, foreach), optimizers, strict=True):
            for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
                # a parameter without gradient in the first step gets its momentum buffer one step later
                param.grad = None if (step == 0 and index == 2) else grad.clone()
            optimizer.step()
        for a, b in zip(per_param, foreach, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
