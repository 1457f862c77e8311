"""NaiveSyncBatchNorm1d: BatchNorm1d on one process, the global batch's statistics across processes."""

from __future__ import annotations

import torch
from detectron2.utils import comm
from distributed_testing import run_distributed
from torch import nn

from soco.modeling.batch_norm import NaiveSyncBatchNorm1d
from soco.modeling.mlp import MLP


def _pair(shape: tuple[int, ...]) -> tuple[nn.BatchNorm1d, NaiveSyncBatchNorm1d]:
    reference = nn.BatchNorm1d(shape[1]).double()
    synced = NaiveSyncBatchNorm1d(shape[1]).double()
    with torch.no_grad():
        for module in (reference, synced):
            module.weight.copy_(torch.linspace(0.5, 1.5, shape[1]))
            module.bias.copy_(torch.linspace(-1, 1, shape[1]))
    return reference, synced


def test_one_process_is_batchnorm1d():
    reference, synced = _pair((6, 4))
    x = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(synced(x), reference(x))
    torch.testing.assert_close(synced.running_var, reference.running_var)


def _check_global_statistics(shape: tuple[int, ...], sizes: tuple[int, int]) -> None:
    """Rank r holds rows of the global batch; output, input gradient, parameter gradients (summed over
    processes, as DDP does before averaging) and running statistics equal BatchNorm1d on the whole batch."""
    generator = torch.Generator().manual_seed(0)
    full = torch.randn(sum(sizes), *shape[1:], generator=generator, dtype=torch.float64) * 3 + 5
    upstream = torch.randn(full.shape, generator=generator, dtype=torch.float64)
    reference, synced = _pair(full.shape)
    x_full = full.clone().requires_grad_()
    (reference(x_full) * upstream).sum().backward()

    rank = comm.get_rank()
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    x = full[rows].clone().requires_grad_()
    out = synced(x)
    (out * upstream[rows]).sum().backward()
    torch.testing.assert_close(out, reference(full)[rows].detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x_full.grad[rows], rtol=1e-10, atol=1e-12)
    for name in ("weight", "bias"):
        grad = getattr(synced, name).grad.clone()
        torch.distributed.all_reduce(grad)
        torch.testing.assert_close(grad, getattr(reference, name).grad, rtol=1e-10, atol=1e-12)
    # reference ran twice (forward above and the expected output), synced once: compare after one update
    single = nn.BatchNorm1d(full.shape[1]).double()
    single(full)
    torch.testing.assert_close(synced.running_mean, single.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synced.running_var, single.running_var, rtol=1e-12, atol=1e-12)
    assert int(synced.num_batches_tracked) == 1


def _check_cases(cases: list[tuple[tuple[int, ...], tuple[int, int]]]) -> None:
    for shape, sizes in cases:
        _check_global_statistics(shape, sizes)


def test_two_processes_see_the_global_batch(tmp_path):
    """Equal and unequal per-process batches, (N, C) and (N, C, L) inputs."""
    run_distributed(_check_cases, tmp_path, [((6, 4), (3, 3)), ((5, 4), (3, 2)), ((4, 3, 5), (2, 2))])


def test_mlp_picks_it_by_name():
    assert isinstance(MLP(8, 16, 4, norm="naiveSyncBN")[1], NaiveSyncBatchNorm1d)
