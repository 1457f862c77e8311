import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.utils.events import EventStorage
from distributed_testing import run_distributed
from torch.distributed import get_rank

from soco.modeling.contrastive import (
    batch_shuffle,
    batch_unshuffle,
    concat_all_gather,
    contrastive_accuracy,
    info_nce_logits,
    info_nce_loss,
    shuffle_permutation,
)


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_matches_hand_computation():
    query, positive, negatives = _unit(3, 4, seed=0), _unit(3, 4, seed=1), _unit(5, 4, seed=2)
    logits = info_nce_logits(query, positive, negatives, temperature=0.2)
    assert logits.shape == (3, 6)
    expected_loss = torch.tensor(0.0)
    for n in range(3):
        row = [sum(query[n, d] * positive[n, d] for d in range(4)) / 0.2]
        row += [sum(query[n, d] * negatives[k, d] for d in range(4)) / 0.2 for k in range(5)]
        torch.testing.assert_close(logits[n], torch.stack(row))
        expected_loss += -(row[0] - math.log(sum(math.exp(v) for v in row))) / 3
    torch.testing.assert_close(info_nce_loss(logits), expected_loss)


def test_negatives_may_be_overwritten_before_backward():
    query = _unit(2, 4, seed=0).requires_grad_()
    queue = _unit(6, 4, seed=1)
    loss = info_nce_loss(info_nce_logits(query, _unit(2, 4, seed=2), queue, temperature=0.2))
    queue[:2] = 0.0  # what FeatureQueue.enqueue does after the forward pass
    loss.backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0


def test_accuracy_counts_positive_as_top_class():
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 3.0, 1.0], [2.0, 1.0, 0.0], [1.0, 1.5, 0.0]])
    torch.testing.assert_close(contrastive_accuracy(logits), torch.tensor(50.0))


def test_single_process_gather_and_shuffle_are_no_ops():
    images = torch.randn(4, 3, 2, 2)
    assert concat_all_gather(images) is images
    shuffled, unshuffle = batch_shuffle(images, seed=0)
    assert shuffled is images and unshuffle is None
    assert batch_unshuffle(images, None) is images


def _check_gather_and_shuffle_round_trip() -> None:
    rank = get_rank()
    local = torch.arange(4, dtype=torch.float32).view(4, 1) + 10 * rank  # rows 0..3 / 10..13
    expected = torch.tensor([0.0, 1, 2, 3, 10, 11, 12, 13])
    torch.testing.assert_close(concat_all_gather(local).view(-1), expected)
    torch.manual_seed(rank)  # different global generators: the permutation must not depend on them
    with pytest.raises(RuntimeError, match="shuffle-BN draws its permutation from"):
        batch_shuffle(local, seed=3)  # outside a trainer there is no iteration to seed it
    with EventStorage(start_iter=7):
        shuffled, unshuffle = batch_shuffle(local, seed=3)
    assert shuffled.shape == local.shape
    everyone = concat_all_gather(shuffled).view(-1)
    # the permutation of (SEED 3, iteration 7) on both processes: a resumed run draws it again
    torch.testing.assert_close(everyone, expected[shuffle_permutation(8, seed=3, iteration=7)])
    # a per-sample "encoder" applied to the shuffled rows, then unshuffled, lines up with the inputs again
    torch.testing.assert_close(batch_unshuffle(shuffled * 2 + 1, unshuffle), local * 2 + 1)


def test_gather_and_shuffle_across_two_processes(tmp_path):
    run_distributed(_check_gather_and_shuffle_round_trip, tmp_path)


def test_shuffle_permutation_is_a_function_of_seed_and_iteration():
    first = shuffle_permutation(64, seed=0, iteration=5)
    assert sorted(first.tolist()) == list(range(64))
    torch.manual_seed(123)  # the global generator plays no part
    torch.testing.assert_close(shuffle_permutation(64, seed=0, iteration=5), first, rtol=0, atol=0)
    assert not torch.equal(shuffle_permutation(64, seed=0, iteration=6), first)
    assert not torch.equal(shuffle_permutation(64, seed=1, iteration=5), first)
    with pytest.raises(ValueError, match="SEED >= 0"):
        shuffle_permutation(64, seed=-1, iteration=5)
