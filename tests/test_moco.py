import math

import pytest
import torch
from baselines_testing import (
    CONFIGS,
    assert_tiny_config_trains_and_resumes,
    build_tiny_model,
    run_command_line,
    run_full_size_config_for_one_iteration,
    two_views,
)

from soco.data.batch_keys import TWO_VIEWS_KEY
from soco.engine.pretrain import setup_pretrain_cfg

TINY_MOCO = CONFIGS / "tiny" / "MoCoV2.yaml"


def tiny_model(*overrides: str):
    return build_tiny_model(TINY_MOCO, "MOCO.VIEWS.SIZE", "32", *overrides)


def test_state_dict_names_follow_the_shared_convention():
    keys = tiny_model().state_dict().keys()
    assert "backbone.stem.conv1.weight" in keys and "backbone.res5.1.conv2.weight" in keys
    assert "projector.0.weight" in keys and "projector.2.weight" in keys
    assert "target.backbone.stem.conv1.weight" in keys and "target.projector.2.weight" in keys
    assert {"queue.features", "queue.ptr"} <= set(keys)


def test_key_encoder_starts_as_a_copy_and_gets_no_gradient():
    model = tiny_model()
    for (name, online), target in zip(
        model.online_modules().named_parameters(), model.target.parameters(), strict=True
    ):
        torch.testing.assert_close(target, online, msg=name)
        assert not target.requires_grad
    model(two_views())["loss_moco"].backward()
    assert all(p.grad is None for p in model.target.parameters())
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0
    assert model.projector[0].weight.grad.abs().sum() > 0


def test_key_encoder_follows_the_ema_of_the_query_encoder():
    model = tiny_model()
    with torch.no_grad():  # make online and target differ
        for param in model.online_modules().parameters():
            param.add_(torch.randn_like(param) * 0.1)
    online = [p.detach().clone() for p in model.online_modules().parameters()]
    before = [p.detach().clone() for p in model.target.parameters()]
    model.momentum_update(0.9)
    for old, new, query in zip(before, model.target.parameters(), online, strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * query)


def test_loss_is_infonce_over_key_and_queue_and_keys_are_enqueued():
    model = tiny_model()
    batch = two_views()
    queue = model.queue.features.clone()  # (16, 16)
    loss = model(batch)["loss_moco"]
    with torch.no_grad():  # train-mode BN uses batch statistics, so recomputing gives the same embeddings
        _, query = model.encode(batch[TWO_VIEWS_KEY][:, 0])
        key = model.encode_keys(batch[TWO_VIEWS_KEY][:, 1])
    expected = 0.0
    for n in range(4):
        positive = math.exp(float(query[n] @ key[n]) / 0.2)
        negatives = sum(math.exp(float(query[n] @ queue[k]) / 0.2) for k in range(16))
        expected -= math.log(positive / (positive + negatives)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(model.queue.features[:4], key)
    torch.testing.assert_close(model.queue.features[4:], queue[4:])
    assert int(model.queue.ptr) == 4


def test_eval_mode_leaves_the_queue_alone():
    model = tiny_model().eval()
    queue = model.queue.features.clone()
    loss = model(two_views())["loss_moco"]
    assert torch.isfinite(loss)
    torch.testing.assert_close(model.queue.features, queue)


def test_queue_length_must_be_a_multiple_of_the_batch():
    with pytest.raises(ValueError, match="MOCO.QUEUE_LENGTH=18"):
        tiny_model("MOCO.QUEUE_LENGTH", "18")


def test_tiny_config_trains_and_resumes_exactly(tmp_path):
    assert_tiny_config_trains_and_resumes(TINY_MOCO, tmp_path)


def test_full_size_recipes_run_and_differ_only_in_length(tmp_path):
    trainer = run_full_size_config_for_one_iteration(CONFIGS / "MoCoV2_200ep.yaml", tmp_path)
    cfg = trainer.cfg
    assert cfg.SOLVER.MAX_ITER == 200 * 3 and cfg.SOLVER.WARMUP_ITERS == 0
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.03 * 2 / 256)  # linear scaling from batch 256
    model = trainer.model
    assert model.queue.length == 65536 and model.projector[0].in_features == 2048
    same_data = ["PRETRAIN.DATA.IMAGE_ROOT", cfg.PRETRAIN.DATA.IMAGE_ROOT, "SOLVER.IMS_PER_BATCH", "2"]
    long_cfg = setup_pretrain_cfg(str(CONFIGS / "MoCoV2_800ep.yaml"), same_data)
    assert long_cfg.SOLVER.MAX_ITER == 800 * 3


def test_command_line_writes_the_final_checkpoint(tmp_path):
    state = run_command_line(TINY_MOCO, tmp_path)
    assert "backbone.res5.0.conv1.weight" in state and "target.backbone.res5.0.conv1.weight" in state
