import torch
from distributed_testing import run_distributed
from torch.distributed import get_rank

from soco.modeling.sinkhorn import distributed_sinkhorn


def _scores(batch: int, num_prototypes: int, seed: int = 0) -> torch.Tensor:
    """Cosine-like scores in [-1, 1], deliberately unbalanced towards the first prototypes."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(batch, num_prototypes, generator=generator) * 2 - 1
    scores[:, :3] += 0.5
    return scores.clamp(-1, 1)


def test_every_sample_gets_unit_mass():
    codes = distributed_sinkhorn(_scores(16, 10), epsilon=0.05, num_iters=3)
    assert codes.shape == (16, 10) and codes.dtype == torch.float32
    assert (codes >= 0).all()
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(16))


def test_prototype_marginals_converge_to_equal_partition():
    scores = _scores(16, 8)
    equal_share = torch.full((8,), 16 / 8)
    after_3 = distributed_sinkhorn(scores, epsilon=0.05, num_iters=3).sum(dim=0)
    after_300 = distributed_sinkhorn(scores, epsilon=0.05, num_iters=300).sum(dim=0)
    torch.testing.assert_close(after_300, equal_share, atol=1e-4, rtol=0)
    # three iterations already balance far better than the plain softmax the scores would give
    softmax_share = torch.softmax(scores / 0.05, dim=1).sum(dim=0)
    assert (after_3 - equal_share).abs().max() < 0.5 * (softmax_share - equal_share).abs().max()


def test_half_precision_scores_do_not_overflow():
    codes = distributed_sinkhorn(_scores(8, 6).half(), epsilon=0.05, num_iters=3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()


def test_uniform_scores_give_uniform_codes():
    codes = distributed_sinkhorn(torch.zeros(4, 5), epsilon=0.05, num_iters=3)
    torch.testing.assert_close(codes, torch.full((4, 5), 0.2))


def _check_split_batch_matches_whole_batch(scores: torch.Tensor, expected: torch.Tensor) -> None:
    rows = slice(6 * get_rank(), 6 * (get_rank() + 1))
    local = distributed_sinkhorn(scores[rows], epsilon=0.05, num_iters=3)
    torch.testing.assert_close(local, expected[rows])


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    scores = _scores(12, 7)
    expected = distributed_sinkhorn(scores, epsilon=0.05, num_iters=3)
    run_distributed(_check_split_batch_matches_whole_batch, tmp_path, scores, expected)
