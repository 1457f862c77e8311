"""Weighted k-nearest-neighbour classification of frozen features (InstDisc / DINO protocol).

Features are L2-normalised, the k most cosine-similar training features vote for their labels with
weight ``exp(similarity / T)``, and the class with the largest summed weight wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["knn_accuracy", "weighted_knn_scores"]


def weighted_knn_scores(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> Tensor:
    """Class scores (Q, C) of queries (Q, D) from the k nearest of N training features (N, D).

    ``scores[q, c] = sum over the k nearest training features i of class c of exp(cos(q, i) / T)``;
    k is capped at N. Queries are processed ``chunk_size`` at a time (similarities are (chunk, N)).
    """
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"{train_features.shape[0]} training features but {train_labels.shape[0]} training labels"
        )
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    train = F.normalize(train_features.float(), dim=1)
    queries = F.normalize(query_features.float(), dim=1)
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
) -> float:
    """Top-1 accuracy in percent of :func:`weighted_knn_scores` on labelled queries."""
    if query_features.shape[0] == 0:
        raise ValueError("kNN accuracy needs at least one query")
    scores = weighted_knn_scores(train_features, train_labels, query_features, num_classes, k, temperature)
    predicted = scores.argmax(dim=1).cpu()
    return float((predicted == query_labels.cpu().long()).float().mean() * 100)
