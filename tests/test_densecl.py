import pytest
import torch
import torch.nn.functional as F
from baselines_testing import (
    CONFIGS,
    assert_tiny_config_trains_and_resumes,
    build_tiny_model,
    run_command_line,
    run_full_size_config_for_one_iteration,
    two_views,
)
from torch import nn

from soco.data.batch_keys import TWO_VIEWS_KEY
from soco.modeling.contrastive import info_nce_logits, info_nce_loss
from soco.modeling.densecl import apply_per_cell, dense_correspondence

TINY_DENSECL = CONFIGS / "tiny" / "DenseCL.yaml"


def test_correspondence_picks_the_most_cosine_similar_key_cell():
    directions = torch.eye(4)  # four orthogonal feature directions, C = 4
    # query grid 2x2 (row-major cells 0..3) has direction i at cell i
    query = directions.t().reshape(1, 4, 2, 2)
    # key cell j holds direction perm[j], scaled by j + 1 (lengths must not matter)
    perm = [2, 0, 3, 1]
    key_cells = torch.stack([directions[p] * (j + 1) for j, p in enumerate(perm)])  # (4, C)
    key = key_cells.t().reshape(1, 4, 2, 2)
    match = dense_correspondence(query, key)
    assert match.tolist() == [[perm.index(i) for i in range(4)]]  # cell i -> the key cell with direction i


def test_correspondence_uses_cosine_not_dot_product():
    query = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    # key cell 0: same direction, short; key cell 1: 45 degrees off but 10x longer (wins a dot product)
    key = torch.tensor([[0.5, 0.0], [10.0, 10.0]]).t().reshape(1, 2, 1, 2)
    assert dense_correspondence(query, key).tolist() == [[0]]


def test_per_cell_head_equals_a_1x1_convolution():
    head = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    conv = nn.Sequential(nn.Conv2d(6, 5, 1), nn.ReLU(), nn.Conv2d(5, 3, 1))
    with torch.no_grad():
        for linear, conv_layer in ((head[0], conv[0]), (head[2], conv[2])):
            conv_layer.weight.copy_(linear.weight[:, :, None, None])
            conv_layer.bias.copy_(linear.bias)
    features = torch.randn(2, 6, 3, 3)
    expected = conv(features).flatten(2).transpose(1, 2)  # (2, 9, 3)
    torch.testing.assert_close(apply_per_cell(head, features), expected)


def test_losses_are_weighted_global_and_dense_infonce():
    model = build_tiny_model(TINY_DENSECL, "DENSECL.LOSS_WEIGHT", "0.3")
    batch = two_views(size=64)
    queue, dense_queue = model.queue.features.clone(), model.dense_queue.features.clone()
    losses = model(batch)
    assert set(losses) == {"loss_global", "loss_dense"}
    views = batch[TWO_VIEWS_KEY]
    with torch.no_grad():
        query_features, query = model.encode(views[:, 0])
        dense_query = F.normalize(apply_per_cell(model.dense_projector, query_features), dim=2)  # (4, 4, 16)
        key_features, key, dense_key, pooled = model.encode_dense_keys(views[:, 1])
    assert dense_query.shape == (4, 4, 16)  # 2x2 res5 grid at 64 px
    global_loss = info_nce_loss(info_nce_logits(query, key, queue, 0.2))
    match = dense_correspondence(query_features, key_features)
    positives = torch.stack([dense_key[b, match[b]] for b in range(4)])  # (4, 4, 16)
    dense_logits = info_nce_logits(dense_query.flatten(0, 1), positives.flatten(0, 1), dense_queue, 0.2)
    dense_loss = info_nce_loss(dense_logits)
    assert losses["loss_global"].item() == pytest.approx(0.7 * global_loss.item(), rel=1e-4)
    assert losses["loss_dense"].item() == pytest.approx(0.3 * dense_loss.item(), rel=1e-4)
    # the dense queue receives the pooled dense keys, the global queue the global keys
    torch.testing.assert_close(model.queue.features[:4], key)
    torch.testing.assert_close(model.dense_queue.features[:4], pooled)
    dense_projection = apply_per_cell(model.target.dense_projector, key_features)  # unnormalised (4, 4, 16)
    torch.testing.assert_close(pooled, F.normalize(dense_projection.mean(dim=1)))


def test_momentum_update_covers_the_dense_head():
    model = build_tiny_model(TINY_DENSECL)
    assert "target.dense_projector.0.weight" in model.state_dict()
    with torch.no_grad():
        model.dense_projector[0].weight.add_(1.0)
    before = model.target.dense_projector[0].weight.clone()
    model.momentum_update(0.5)
    expected = 0.5 * before + 0.5 * model.dense_projector[0].weight
    torch.testing.assert_close(model.target.dense_projector[0].weight, expected)


def test_tiny_config_trains_and_resumes_exactly(tmp_path):
    assert_tiny_config_trains_and_resumes(TINY_DENSECL, tmp_path)


def test_full_size_recipe_runs(tmp_path):
    trainer = run_full_size_config_for_one_iteration(CONFIGS / "DenseCL_200ep.yaml", tmp_path)
    assert trainer.model.dense_queue.length == 65536 and trainer.cfg.DENSECL.LOSS_WEIGHT == 0.5


def test_command_line_writes_the_final_checkpoint(tmp_path):
    state = run_command_line(TINY_DENSECL, tmp_path)
    assert {"dense_projector.0.weight", "target.dense_projector.0.weight", "dense_queue.features"} <= set(
        state
    )
