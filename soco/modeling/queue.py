"""A first-in first-out queue of embeddings: MoCo's dictionary of negatives, SwAV's memory of past crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .contrastive import concat_all_gather

#: seed of the initial queue contents: the same on every process whatever the process's own seed
_INIT_SEED = 0


class FeatureQueue(nn.Module):
    """A ring buffer of the last ``length`` embeddings of size ``dim``, in buffers so checkpoints hold it.

    Buffers: ``features`` ``(length, dim)``, initialised to random unit vectors (as MoCo) drawn from a
    fixed seed, so that processes agree even before the first ``length`` rows are overwritten (DDP does
    not broadcast buffers here);
    ``ptr`` ``(1,)`` int64, the next row to write; ``num_enqueued`` ``(1,)`` int64, rows written so far.
    Every process enqueues the embeddings of the *global* batch (all-gathered), so all processes hold
    the same queue, a checkpoint written by process 0 restores it everywhere, and ``length`` must be a
    multiple of the global batch.
    """

    def __init__(self, length: int, dim: int):
        super().__init__()
        if length <= 0 or dim <= 0:
            raise ValueError(f"a feature queue needs length > 0 and dim > 0, got length={length}, dim={dim}")
        initial = torch.randn(length, dim, generator=torch.Generator().manual_seed(_INIT_SEED))
        self.register_buffer("features", F.normalize(initial, dim=1))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.int64))
        self.register_buffer("num_enqueued", torch.zeros(1, dtype=torch.int64))

    @property
    def length(self) -> int:
        return self.features.shape[0]

    @property
    def is_full(self) -> bool:
        """Whether every row has been written at least once (rows still hold their random init otherwise)."""
        return int(self.num_enqueued) >= self.length

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor) -> None:
        """Write this process's ``embeddings`` ``(B, dim)``, all-gathered to ``(B_global, dim)``, at ``ptr``.

        The queue length must be a multiple of the global batch, so a batch never straddles the end of
        the buffer; a mismatch raises ``ValueError`` naming both numbers.
        """
        embeddings = concat_all_gather(embeddings)
        batch = embeddings.shape[0]
        if self.length % batch:
            raise ValueError(
                f"queue length {self.length} is not a multiple of the global batch {batch}: "
                "choose a queue length divisible by the batch size"
            )
        start = int(self.ptr)
        self.features[start : start + batch] = embeddings.detach().to(self.features.dtype)
        self.ptr[0] = (start + batch) % self.length
        self.num_enqueued += batch
