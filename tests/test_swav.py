import pytest
import torch
import torch.nn.functional as F
from baselines_testing import (
    CONFIGS,
    assert_tiny_config_trains_and_resumes,
    build_tiny_model,
    run_command_line,
    run_full_size_config_for_one_iteration,
)
from detectron2.utils.events import EventStorage

from soco.data.batch_keys import multi_crop_key
from soco.modeling.backbone import global_pool
from soco.modeling.sinkhorn import distributed_sinkhorn

TINY_SWAV = CONFIGS / "tiny" / "SwAV.yaml"


def tiny_swav(*overrides: str):
    return build_tiny_model(TINY_SWAV, *overrides)


def crops(batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        multi_crop_key(0): torch.randn(batch, 2, 3, 32, 32, generator=generator),
        multi_crop_key(1): torch.randn(batch, 2, 3, 16, 16, generator=generator),
    }


def test_state_dict_names_and_no_momentum_network():
    model = tiny_swav()
    keys = set(model.state_dict())
    assert {"prototypes.weight", "backbone.stem.conv1.weight", "projector.1.running_mean"} <= keys
    assert "prototypes.bias" not in keys and not any(k.startswith("target.") for k in keys)
    assert {"queue.0.features", "queue.1.features", "queue.0.ptr"} <= keys
    assert not hasattr(model, "momentum_update")


def test_prototypes_are_normalised_before_every_training_forward():
    model = tiny_swav()
    with torch.no_grad():
        model.prototypes.weight.mul_(torch.rand(10, 1) * 5 + 0.1)
    with EventStorage(0):
        model(crops())
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(10))


def test_prototypes_receive_no_update_while_frozen():
    model = tiny_swav("SWAV.FREEZE_PROTOTYPES_ITERS", "2", "SWAV.QUEUE_LENGTH", "0")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    snapshots = []
    with EventStorage(0) as storage:
        for iteration in range(3):
            storage.iter = iteration
            model(crops(seed=iteration))["loss_swav"].backward()
            model.after_backward(iteration)
            assert (model.prototypes.weight.grad is None) == (iteration < 2)
            assert model.backbone.stem.conv1.weight.grad is not None  # the rest of the network trains
            optimizer.step()
            optimizer.zero_grad()
            snapshots.append(model.prototypes.weight.detach().clone())
    normalised = F.normalize(snapshots[0], dim=1)
    torch.testing.assert_close(snapshots[0], normalised)  # only the normalisation touched them
    torch.testing.assert_close(snapshots[1], normalised)
    assert not torch.allclose(snapshots[2], normalised)


def test_loss_is_the_swapped_prediction_of_sinkhorn_codes():
    model = tiny_swav("SWAV.QUEUE_LENGTH", "0")
    batch = crops()
    with EventStorage(0):
        loss = model(batch)["loss_swav"]
    with torch.no_grad():  # recompute the scores (train-mode BN: batch statistics, same result)
        images = [group.transpose(0, 1).flatten(0, 1) for group in batch.values()]  # crop-major
        pooled = [global_pool(model.backbone(group)["res5"]) for group in images]
        embeddings = F.normalize(model.projector(torch.cat(pooled)), dim=1)
        scores = (embeddings @ model.prototypes.weight.t()).view(4, 4, 10)  # (crop, sample, prototype)
    expected = 0.0
    for crop in (0, 1):
        codes = distributed_sinkhorn(scores[crop], epsilon=0.05, num_iters=3)
        for other in range(4):
            if other != crop:
                log_probs = torch.log_softmax(scores[other] / 0.1, dim=1)
                expected += -(codes * log_probs).sum(dim=1).mean().item() / 3 / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_queue_fills_from_its_start_iteration_and_feeds_sinkhorn_once_full():
    model = tiny_swav("SWAV.QUEUE_LENGTH", "8", "SWAV.QUEUE_START_ITER", "1")
    queue = model.queue[0]
    with EventStorage(0) as storage:
        model(crops(seed=0))
        assert int(queue.num_enqueued) == 0  # before the start iteration
        for iteration in (1, 2):
            storage.iter = iteration
            model(crops(seed=iteration))
        assert queue.is_full and int(model.queue[1].num_enqueued) == 8
        scores, embeddings = torch.randn(4, 10), F.normalize(torch.randn(4, 16), dim=1)
        stored = queue.features.clone()
        codes = model.assign_codes(0, scores, embeddings)
    expected = distributed_sinkhorn(torch.cat([stored @ model.prototypes.weight.t(), scores]), 0.05, 3)[-4:]
    torch.testing.assert_close(codes, expected)
    torch.testing.assert_close(queue.features[:4], embeddings)  # then the batch is enqueued


def test_queue_length_is_rounded_down_to_the_global_batch():
    model = tiny_swav("SWAV.QUEUE_LENGTH", "10")
    assert model.queue[0].length == 8
    with pytest.raises(ValueError, match="shorter than one batch"):
        tiny_swav("SWAV.QUEUE_LENGTH", "3")


def test_epoch_keys_are_used_for_epoch_scheduled_runs():
    model = tiny_swav(
        "SOLVER.ITERS_PER_EPOCH",
        "5",
        "SWAV.FREEZE_PROTOTYPES_EPOCHS",
        "1.0",
        "SWAV.QUEUE_START_EPOCHS",
        "3.0",
    )
    assert model.freeze_prototypes_iters == 5 and model.queue_start_iter == 15
    model = tiny_swav()
    assert model.freeze_prototypes_iters == 2 and model.queue_start_iter == 1


def test_missing_crops_are_reported():
    with pytest.raises(KeyError, match="crops_0"), EventStorage(0):
        tiny_swav()({"views": torch.zeros(4, 2, 3, 32, 32)})


def test_tiny_config_trains_and_resumes_exactly(tmp_path):
    # 6 iterations cover the frozen prototypes (0, 1), the queue filling (1, 2) and in use (3..5)
    assert_tiny_config_trains_and_resumes(TINY_SWAV, tmp_path)


def test_full_size_recipe_resolves_epochs_and_runs(tmp_path):
    trainer = run_full_size_config_for_one_iteration(CONFIGS / "SwAV_200ep.yaml", tmp_path)
    model = trainer.model
    # one epoch of prototype freezing and a queue from epoch 15, at 3 iterations per epoch
    assert model.freeze_prototypes_iters == 3 and model.queue_start_iter == 45
    assert model.queue[0].length == 3840 and model.prototypes.weight.shape == (3000, 128)
    assert trainer.cfg.SOLVER.BASE_LR == pytest.approx(0.6 * 2 / 256)


def test_command_line_writes_the_final_checkpoint(tmp_path):
    state = run_command_line(TINY_SWAV, tmp_path)
    assert {"backbone.stem.conv1.weight", "prototypes.weight", "queue.0.features"} <= set(state)
