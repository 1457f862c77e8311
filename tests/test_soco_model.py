"""SoCo meta-architectures and loss: hand-computed loss, training steps, Detectron2 names, momentum."""

from __future__ import annotations

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from soco_testing import tiny_batch, tiny_cfg

from soco.data import batch_keys as keys
from soco.modeling.soco_loss import matched_cosine_loss, symmetric_pair_loss

# --- loss ------------------------------------------------------------------------------------------------


def test_matched_cosine_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    q, z = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    corr = torch.zeros(2, 3, 4)
    corr[0, 0, 1] = corr[0, 2, 1] = corr[0, 1, 3] = 1  # image 0: three matches, slot 1 of z twice
    corr[1, 2, 0] = 1  # image 1: one match
    expected_terms = []
    for n in range(2):
        total, count = 0.0, 0.0
        for i in range(3):
            for j in range(4):
                if corr[n, i, j]:
                    total += float(torch.dot(q[n, i], z[n, j]) / (q[n, i].norm() * z[n, j].norm()))
                    count += 1
        expected_terms.append(total / (count + 1e-6))
    expected = -2.0 * sum(expected_terms) / 2
    assert matched_cosine_loss(q, z, corr).item() == pytest.approx(expected, rel=1e-5)


def test_loss_of_identical_matched_vectors_is_minus_two_and_unmatched_images_count_zero():
    z = torch.randn(3, 4, 8)
    corr = torch.eye(4).repeat(3, 1, 1)
    corr[2] = 0  # no match in image 2: contributes 0 to the mean
    assert matched_cosine_loss(3.0 * z, z, corr).item() == pytest.approx(-2.0 * 2 / 3, rel=1e-5)


def test_symmetric_pair_loss_uses_the_transposed_correspondence():
    torch.manual_seed(1)
    q_a, z_a, q_b, z_b = (torch.randn(2, 3, 6) for _ in range(4))
    corr = (torch.rand(2, 3, 3) > 0.5).float()
    expected = matched_cosine_loss(q_a, z_b, corr) + matched_cosine_loss(q_b, z_a, corr.transpose(1, 2))
    assert symmetric_pair_loss(q_a, z_a, q_b, z_b, corr).item() == pytest.approx(expected.item())
    wrong = matched_cosine_loss(q_a, z_b, corr) + matched_cosine_loss(q_b, z_a, corr)
    assert symmetric_pair_loss(q_a, z_a, q_b, z_b, corr).item() != pytest.approx(wrong.item())


# --- models ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, pool_all_levels", [("fpn", True), ("fpn", False), ("star", True), ("c4", True)]
)
def test_tiny_variants_learn_on_a_repeated_batch(variant, pool_all_levels):
    torch.manual_seed(0)
    cfg = tiny_cfg(variant, "SOCO.POOL_ALL_LEVELS", pool_all_levels)
    model = build_model(cfg)
    model.train()
    batch = tiny_batch(cfg)
    expected_pairs = {"fpn": 2, "star": 3, "c4": 1}[variant]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    totals = []
    for _ in range(6):
        model.momentum_update(0.99)
        losses = model(batch)
        assert len(losses) == expected_pairs and all(k.startswith("loss_") for k in losses)
        total = sum(losses.values())
        assert torch.isfinite(total) and -4.0 * expected_pairs <= total.item() <= 4.0 * expected_pairs
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < totals[0] - 0.1, totals


def test_pooling_only_assigned_levels_gives_the_same_loss_without_head_batch_norm():
    # With no batch norm in the head and MLPs, the extra crops of POOL_ALL_LEVELS only cost compute.
    opts = ["MODEL.ROI_BOX_HEAD.NORM", "", "SOCO.HEAD.MLP_NORM", ""]
    torch.manual_seed(0)
    every_level = build_model(tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", True, *opts))
    assigned = build_model(tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", False, *opts))
    assigned.load_state_dict(every_level.state_dict())
    batch = tiny_batch(tiny_cfg("fpn"))
    losses_all, losses_assigned = every_level(batch), assigned(batch)
    for name, value in losses_all.items():
        assert losses_assigned[name].item() == pytest.approx(value.item(), abs=1e-4)


def test_momentum_target_starts_equal_is_frozen_and_follows_the_ema():
    model = build_model(tiny_cfg("c4"))
    online = dict(model.named_parameters())
    target = dict(model.target.named_parameters())
    assert set(target) == {k for k in online if not k.startswith(("target.", "predictor."))}
    assert all(not p.requires_grad for p in target.values())
    for name, value in target.items():
        torch.testing.assert_close(value, online[name])
    with torch.no_grad():
        for param in model.projector.parameters():
            param.add_(1.0)
    model.momentum_update(0.75)
    torch.testing.assert_close(model.target.projector[0].weight, model.projector[0].weight - 0.75)


def test_last_norm_of_every_residual_block_starts_at_zero():
    model = build_model(tiny_cfg("c4"))
    state = model.state_dict()
    assert (state["backbone.res2.0.conv2.norm.weight"] == 0).all()  # BasicBlock (R18)
    assert (state["roi_heads.res5.0.conv3.norm.weight"] == 0).all()  # BottleneckBlock
    assert (state["backbone.res2.0.conv1.norm.weight"] == 1).all()
    unchanged = build_model(tiny_cfg("c4", "SOCO.ZERO_INIT_RESIDUAL", False)).state_dict()
    assert (unchanged["roi_heads.res5.0.conv3.norm.weight"] == 1).all()


def _mask_rcnn_like(cfg_soco, zoo_config: str):
    """A Detectron2 Mask R-CNN with the same backbone / FPN / box head settings as the SoCo config."""
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.merge_from_other_cfg(cfg_soco.MODEL.RESNETS)
    cfg.MODEL.FPN.merge_from_other_cfg(cfg_soco.MODEL.FPN)
    for key in ("NAME", "NUM_CONV", "CONV_DIM", "NUM_FC", "FC_DIM", "NORM"):
        if "C4" not in zoo_config:
            cfg.MODEL.ROI_BOX_HEAD[key] = cfg_soco.MODEL.ROI_BOX_HEAD[key]
    cfg.MODEL.RESNETS.NORM = "BN"
    return build_model(cfg)


@pytest.mark.parametrize(
    "variant, zoo_config, prefixes",
    [
        ("fpn", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", ("backbone.", "roi_heads.box_head.")),
        ("c4", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml", ("backbone.", "roi_heads.res5.")),
    ],
)
def test_online_weights_load_into_detectron2_mask_rcnn_by_name(variant, zoo_config, prefixes):
    cfg = tiny_cfg(variant)
    soco_state = build_model(cfg).state_dict()
    online = {k: v for k, v in soco_state.items() if k.startswith(prefixes)}
    assert any(k.startswith("backbone.bottom_up.res2.") or k.startswith("backbone.res2.") for k in online)
    assert f"target.{next(iter(online))}" in soco_state
    mask_rcnn = _mask_rcnn_like(cfg, zoo_config)
    result = mask_rcnn.load_state_dict(online, strict=False)
    assert not result.unexpected_keys
    detector_state = mask_rcnn.state_dict()
    for key, value in online.items():
        torch.testing.assert_close(detector_state[key], value)
    missing_backbone = [k for k in result.missing_keys if k.startswith(prefixes)]
    assert not missing_backbone, missing_backbone


def test_batch_without_correspondence_is_rejected():
    model = build_model(tiny_cfg("fpn"))
    with pytest.raises(ValueError, match="correspondence"):
        model({keys.view_key(1): torch.zeros(1, 3, 64, 64)})


def test_state_dict_keeps_detectron2_names_without_duplicates():
    for variant, head in (("fpn", "roi_heads.box_head."), ("c4", "roi_heads.res5.")):
        state = build_model(tiny_cfg(variant)).state_dict()
        online = ("backbone.", head, "projector.", "predictor.")
        target = tuple(f"target.{prefix}" for prefix in online[:3])
        assert all(name.startswith(online + target) for name in state), variant
        assert {name for name in state if name.startswith("target.")} == {
            f"target.{name}" for name in state if name.startswith(online[:3])
        }


# --- batch-norm batches of the RoI head and MLPs (SOCO.HEAD_BATCHING) -------------------------------------


def _models_per_batching(variant: str, *opts) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    torch.manual_seed(0)
    per_level = build_model(tiny_cfg(variant, "SOCO.HEAD_BATCHING", "per_level", *opts))
    per_box_set = build_model(tiny_cfg(variant, "SOCO.HEAD_BATCHING", "per_box_set", *opts))
    per_box_set.load_state_dict(per_level.state_dict())
    return per_level, per_box_set, tiny_batch(tiny_cfg(variant, *opts))


def _embeddings(model, batch) -> dict[str, torch.Tensor]:
    names = keys.box_sets(keys.pairs(batch))
    with torch.no_grad():
        online = model.online_branch()
        projected = online.embed_box_sets(batch, names)
        out = {f"target{n}": z for n, z in model.target.embed_box_sets(batch, names).items()}
        for name, z in projected.items():
            out[f"prediction{name}"] = model.predict(z, online.head_batches(batch[keys.levels_key(name)]))
    return out


@pytest.mark.parametrize("variant, pool_all_levels", [("fpn", True), ("fpn", False), ("star", True)])
def test_head_batchings_agree_in_eval_mode_and_differ_in_train_mode(variant, pool_all_levels):
    per_level, per_box_set, batch = _models_per_batching(variant, "SOCO.POOL_ALL_LEVELS", pool_all_levels)
    per_level.eval(), per_box_set.eval()
    eval_level, eval_box_set = _embeddings(per_level, batch), _embeddings(per_box_set, batch)
    for name, value in eval_level.items():
        torch.testing.assert_close(eval_box_set[name], value, rtol=1e-4, atol=1e-5)
    losses_level, losses_box_set = per_level(batch), per_box_set(batch)
    for name, value in losses_level.items():
        assert losses_box_set[name].item() == pytest.approx(value.item(), abs=1e-5)
    per_level.train(), per_box_set.train()  # batch statistics: each level normalised apart, or not
    train_level, train_box_set = _embeddings(per_level, batch), _embeddings(per_box_set, batch)
    for name, value in train_level.items():
        assert (train_box_set[name] - value).abs().max() > 1e-3, name
    losses_level, losses_box_set = per_level(batch), per_box_set(batch)
    assert all(abs(losses_box_set[n].item() - v.item()) > 1e-4 for n, v in losses_level.items())


def test_c4_has_one_level_so_both_head_batchings_are_the_same():
    per_level, per_box_set, batch = _models_per_batching("c4")
    for name, value in per_level(batch).items():
        assert per_box_set(batch)[name].item() == pytest.approx(value.item(), abs=1e-6)


def test_per_level_batches_of_assigned_levels_skip_empty_levels_and_merge_single_rois():
    cfg = tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", False)
    model = build_model(cfg).train()
    batch = tiny_batch(cfg)
    # V3 is 32 px: with thresholds 16/32/48/64 its boxes are on P2/P3, so P4/P5 hold none of box set 3
    assert set(batch[keys.levels_key("3")].unique().tolist()) <= {0, 1}
    calls = []
    model.roi_heads.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    names = keys.box_sets(keys.pairs(batch))
    expected = [int((batch[keys.levels_key(n)] == level).sum()) for n in names for level in range(4)]
    assert all(count != 1 for count in expected), "the batch must not test the single-box case here"
    assert calls == [count for count in expected if count], "one head call per non-empty level"
    single = dict(batch)
    levels = torch.zeros_like(batch[keys.levels_key("2")])
    levels[0, 0] = 1  # the only box on P3: normalised with the boxes of P2 (train-mode BN needs 2 values)
    single[keys.levels_key("2")] = levels
    calls.clear()
    assert all(torch.isfinite(v) for v in model(single).values())
    online = model.online_branch()
    assert [len(rows) for rows in online.head_batches(levels)] == [levels.numel()]
    assert calls == [len(rows) for n in names for rows in online.head_batches(single[keys.levels_key(n)])]


def test_forward_is_online_branch_predictor_target_branch_and_loss():
    cfg = tiny_cfg("fpn")
    model = build_model(cfg).train()
    batch = tiny_batch(cfg)
    losses = model(batch)
    pairs = keys.pairs(batch)
    names = keys.box_sets(pairs)
    online = model.online_branch()
    embedded = {}
    for name in names:
        view = batch[keys.view_key(keys.view_of(name))]
        boxes, levels = batch[keys.boxes_key(name)], batch[keys.levels_key(name)]
        (projected,) = online(view, [boxes], [levels])  # (N, P*K, D)
        prediction = model.predict(projected, online.head_batches(levels))
        with torch.no_grad():
            (target,) = model.target(view, [boxes], [levels])
        embedded[name] = prediction, target
    assert sorted(losses) == [keys.loss_key(a, b) for a, b in pairs]
    for a, b in pairs:
        expected = symmetric_pair_loss(*embedded[a], *embedded[b], batch[keys.correspondence_key(a, b)])
        assert losses[keys.loss_key(a, b)].item() == pytest.approx(expected.item(), abs=1e-6)
