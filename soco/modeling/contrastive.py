"""InfoNCE over a dictionary of negatives (MoCo, DenseCL), cross-process gathering, and MoCo's shuffle-BN."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor

from .events import training_iteration

_SHUFFLE_STREAM = 2  # keeps the permutations' seeds apart from other (SEED, iteration) draws


@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """``(B, ...)`` on each process -> ``(world_size * B, ...)`` in rank order, without gradient.

    Returns ``tensor`` itself on a single process.
    """
    world_size = comm.get_world_size()
    if world_size == 1:
        return tensor
    tensor = tensor.contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(gathered, tensor)
    return torch.cat(gathered)


def info_nce_logits(query: Tensor, positive: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """Logits of the (1 + K)-way InfoNCE classification; the positive is class 0.

    ``query`` and ``positive`` ``(N, D)``, ``negatives`` ``(K, D)``, all L2-normalised -> ``(N, 1 + K)``:
    ``[q . k+ , q . n_1, ..., q . n_K] / temperature``.
    The negatives get no gradient and are copied, because the queue they usually come from is
    overwritten in place before the backward pass.
    """
    positive_logits = (query * positive).sum(dim=1, keepdim=True)  # (N, 1)
    negative_logits = query @ negatives.detach().clone().t()  # (N, K)
    return torch.cat([positive_logits, negative_logits], dim=1) / temperature


def info_nce_loss(logits: Tensor) -> Tensor:
    """Cross-entropy of ``logits`` ``(N, 1 + K)`` with every target at class 0 (the positive)."""
    targets = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def contrastive_accuracy(logits: Tensor) -> Tensor:
    """Top-1 accuracy in percent of the (1 + K)-way classification: how often the positive scores highest."""
    return (logits.argmax(dim=1) == 0).float().mean() * 100.0


def shuffle_permutation(size: int, seed: int, iteration: int) -> Tensor:
    """The shuffle-BN permutation ``(size,)`` of iteration ``iteration``: a pure function of
    ``(seed, iteration)``, so every process draws the same one and a resumed run the same as before."""
    if seed < 0:
        raise ValueError(f"shuffle-BN needs a fixed SEED >= 0 (got {seed}): it seeds the permutations")
    state = np.random.SeedSequence([seed, iteration, _SHUFFLE_STREAM]).generate_state(1, dtype=np.uint64)
    return torch.randperm(size, generator=torch.Generator().manual_seed(int(state[0])))


@torch.no_grad()
def batch_shuffle(images: Tensor, seed: int) -> tuple[Tensor, Tensor | None]:
    """Shuffle-BN, step 1: this process's share of a random permutation of the global batch.

    Returns ``(images', unshuffle)``: ``images'`` ``(B, ...)`` are B images drawn from all processes by
    :func:`shuffle_permutation` of ``seed`` (``SEED``) and the trainer's iteration, the same on every
    process (nothing is broadcast), so the key encoder's batch-norm statistics on this process come from
    other samples than the matching queries; ``unshuffle`` undoes it in :func:`batch_unshuffle`. On a
    single process this is a no-op returning ``(images, None)``: shuffling inside one batch would not
    change its statistics, and the original MoCo supports DDP only.
    """
    world_size = comm.get_world_size()
    if world_size == 1:
        return images, None
    all_images = concat_all_gather(images)  # (world_size * B, ...)
    iteration = training_iteration("shuffle-BN draws its permutation from (SEED, iteration)")
    permutation = shuffle_permutation(all_images.shape[0], seed, iteration).to(images.device)
    batch = images.shape[0]
    rank = comm.get_rank()
    return all_images[permutation[rank * batch : (rank + 1) * batch]], torch.argsort(permutation)


@torch.no_grad()
def batch_unshuffle(features: Tensor, unshuffle: Tensor | None) -> Tensor:
    """Shuffle-BN, step 2: this process's own rows of ``features`` ``(B, ...)`` back (no-op if ``None``)."""
    if unshuffle is None:
        return features
    all_features = concat_all_gather(features)  # (world_size * B, ...)
    batch = features.shape[0]
    rank = comm.get_rank()
    return all_features[unshuffle[rank * batch : (rank + 1) * batch]]
