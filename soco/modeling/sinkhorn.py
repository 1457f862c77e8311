"""SwAV's equal-partition soft assignment of samples to prototypes (Sinkhorn-Knopp), across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch import Tensor

from .precision import at_least_float32


def _all_reduce_sum_(tensor: Tensor) -> Tensor:
    """In place: sum ``tensor`` over all processes (nothing to do on a single process)."""
    if comm.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


@torch.no_grad()
def distributed_sinkhorn(scores: Tensor, epsilon: float = 0.05, num_iters: int = 3) -> Tensor:
    """Soft codes ``(B, K)`` from prototype scores ``(B, K)`` of this process's B samples.

    Finds Q = diag(u) exp(scores / epsilon) diag(v) over the *global* batch (B x world_size samples)
    such that every prototype receives 1/K of the mass and every sample 1/B_global, by ``num_iters``
    rounds of alternating row/column normalisation; prototype sums are all-reduced over processes.
    Computed in at least float32 whatever the input dtype (exp(1 / 0.05) overflows float16).
    Returns the codes scaled so that each sample's row sums to 1.
    """
    codes = torch.exp(at_least_float32(scores) / epsilon).t()  # (K, B): prototypes x samples
    num_prototypes = codes.shape[0]
    global_batch = codes.shape[1] * comm.get_world_size()
    codes /= _all_reduce_sum_(codes.sum())
    for _ in range(num_iters):
        codes /= _all_reduce_sum_(codes.sum(dim=1, keepdim=True))  # each prototype: total mass 1 ...
        codes /= num_prototypes  # ... then 1/K
        codes /= codes.sum(dim=0, keepdim=True)  # each sample: mass 1 ...
        codes /= global_batch  # ... then 1/B_global
    return (codes * global_batch).t()
