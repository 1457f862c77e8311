"""SoCo's object-level loss: BYOL's negative cosine between matched boxes of two views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .precision import at_least_float32


def matched_cosine_loss(
    predictions: Tensor, targets: Tensor, correspondence: Tensor, eps: float = 1e-6
) -> Tensor:
    """``-2 * mean_n [ sum_ij C_nij <q_ni, z_nj> / (sum_ij C_nij + eps) ]`` with q, z L2-normalised.

    ``predictions`` q (N, A, D): online predictor outputs of view a's box slots; ``targets`` z (N, B, D):
    target projector outputs of view b's slots; ``correspondence`` C (N, A, B): 1 where the slots hold the
    same proposal (duplicates count several times). Images without any match contribute 0. Computed in fp32,
    also inside an autocast region.
    """
    with torch.autocast(predictions.device.type, enabled=False):
        q = F.normalize(at_least_float32(predictions), dim=-1)
        z = F.normalize(at_least_float32(targets), dim=-1)
        similarity = torch.einsum("nad,nbd->nab", q, z)  # (N, A, B) cosine similarities
        correspondence = correspondence.to(q.dtype)
        per_image = (similarity * correspondence).sum(dim=(1, 2)) / (correspondence.sum(dim=(1, 2)) + eps)
        return -2.0 * per_image.mean()


def symmetric_pair_loss(
    predictions_a: Tensor, targets_a: Tensor, predictions_b: Tensor, targets_b: Tensor, correspondence: Tensor
) -> Tensor:
    """Both directions of a view pair: a's predictions against b's targets through C, and b's against a's
    through C transposed. ``correspondence`` (N, A, B) relates a's slots (rows) to b's (columns).
    """
    return matched_cosine_loss(predictions_a, targets_b, correspondence) + matched_cosine_loss(
        predictions_b, targets_a, correspondence.transpose(1, 2)
    )
