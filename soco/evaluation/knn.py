"""Weighted k-nearest-neighbour classification of frozen features (InstDisc / DINO protocol).

Features are normalised (:data:`KNN_NORMALIZATIONS`), the k most cosine-similar training features vote for
their labels with weight ``exp(similarity / T)``, and the class with the largest summed weight wins.
Non-finite features (a diverged model) give a NaN accuracy, never a number: ``argmax`` over NaN scores
would answer class 0 for every query.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["KNN_NORMALIZATIONS", "knn_accuracy", "normalize_knn_features", "weighted_knn_scores"]

#: How features are made comparable before the cosine similarity:
#: ``cosine``: L2-normalised as they are; ``centered``: minus the training features' mean, then L2-normalised
#: (post-ReLU features share a large positive offset that makes every pairwise cosine ~0.9, so the votes are
#: nearly uniform); ``standardized``: centred and divided by the training features' per-dimension std.
KNN_NORMALIZATIONS = ("cosine", "centered", "standardized")


def normalize_knn_features(train: Tensor, queries: Tensor, normalization: str) -> tuple[Tensor, Tensor]:
    """Training (N, D) and query (Q, D) features normalised as ``normalization`` says, unit rows, fp32."""
    if normalization not in KNN_NORMALIZATIONS:
        raise ValueError(f"kNN normalization {normalization!r}: expected one of {KNN_NORMALIZATIONS}")
    train, queries = train.float(), queries.float()
    if normalization != "cosine":
        mean = train.mean(dim=0)
        train, queries = train - mean, queries - mean
    if normalization == "standardized":
        std = train.std(dim=0, unbiased=False).clamp_min(1e-6)
        train, queries = train / std, queries / std
    return F.normalize(train, dim=1), F.normalize(queries, dim=1)


def weighted_knn_scores(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    normalization: str = "cosine",
) -> Tensor:
    """Class scores (Q, C) of queries (Q, D) from the k nearest of N training features (N, D).

    ``scores[q, c] = sum over the k nearest training features i of class c of exp(cos(q, i) / T)``, the
    cosine taken after :func:`normalize_knn_features`; k is capped at N. Queries are processed
    ``chunk_size`` at a time (similarities are (chunk, N)).
    """
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"{train_features.shape[0]} training features but {train_labels.shape[0]} training labels"
        )
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    train, queries = normalize_knn_features(train_features, query_features, normalization)
    labels = train_labels.to(train.device, torch.long)
    k = min(k, train.shape[0])
    scores = []
    for chunk in queries.split(chunk_size):
        similarity, nearest = (chunk @ train.T).topk(k, dim=1)  # (q, k)
        weights = (similarity / temperature).exp()
        votes = torch.zeros(chunk.shape[0], num_classes, device=train.device, dtype=train.dtype)
        scores.append(votes.scatter_add_(1, labels[nearest], weights))
    if not scores:
        return torch.zeros(0, num_classes, device=train.device)
    return torch.cat(scores)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    normalization: str = "cosine",
) -> float:
    """Top-1 accuracy in percent of :func:`weighted_knn_scores` on labelled queries; NaN when a feature
    or a score is not finite."""
    if query_features.shape[0] == 0:
        raise ValueError("kNN accuracy needs at least one query")
    if not (train_features.isfinite().all() and query_features.isfinite().all()):
        return math.nan
    scores = weighted_knn_scores(
        train_features, train_labels, query_features, num_classes, k, temperature, normalization=normalization
    )
    if not scores.isfinite().all():
        return math.nan
    predicted = scores.argmax(dim=1).cpu()
    return float((predicted == query_labels.cpu().long()).float().mean() * 100)
