"""Weighted kNN against a hand computation."""

import math

import pytest
import torch

from soco.evaluation import knn_accuracy, normalize_knn_features, weighted_knn_scores

TRAIN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
LABELS = torch.tensor([0, 1, 1, 2])


def test_scores_are_the_summed_exp_cosines_of_the_k_nearest():
    query = torch.tensor([[1.0, 0.2], [-1.0, 0.1]])
    scores = weighted_knn_scores(TRAIN, LABELS, query, num_classes=3, k=2, temperature=0.5)
    norm = math.sqrt(1.04)
    # query 0: nearest [1, 0] (cos 1 / |q|, class 0) and [1, 1] (cos 1.2 / (|q| sqrt 2), class 1)
    expected0 = [math.exp(1 / norm / 0.5), math.exp(1.2 / (norm * math.sqrt(2)) / 0.5), 0.0]
    # query 1: nearest [-1, 0] (class 2) and [0, 1] (cos 0.1 / |q|, class 1); [1, 1] has a negative cosine
    norm1 = math.sqrt(1.01)
    expected1 = [0.0, math.exp(0.1 / norm1 / 0.5), math.exp(1 / norm1 / 0.5)]
    torch.testing.assert_close(scores, torch.tensor([expected0, expected1]))


def test_chunks_and_k_larger_than_the_training_set_change_nothing():
    gen = torch.Generator().manual_seed(0)
    train, queries = torch.randn(30, 8, generator=gen), torch.randn(17, 8, generator=gen)
    labels = torch.randint(0, 4, (30,), generator=gen)
    whole = weighted_knn_scores(train, labels, queries, 4, k=5)
    torch.testing.assert_close(weighted_knn_scores(train, labels, queries, 4, k=5, chunk_size=4), whole)
    everyone = weighted_knn_scores(train, labels, queries, 4, k=100, temperature=0.07)
    torch.testing.assert_close(everyone, weighted_knn_scores(train, labels, queries, 4, k=30))


def test_accuracy_is_the_top1_percentage():
    queries = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])  # nearest: classes 0, 1, 2
    assert knn_accuracy(TRAIN, LABELS, queries, torch.tensor([0, 1, 2]), 3, k=1) == 100.0
    assert knn_accuracy(TRAIN, LABELS, queries, torch.tensor([0, 0, 0]), 3, k=1) == pytest.approx(100 / 3)


def test_mismatched_or_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="4 training features but 3 training labels"):
        weighted_knn_scores(TRAIN, LABELS[:3], TRAIN, 3)
    with pytest.raises(ValueError, match="at least one query"):
        knn_accuracy(TRAIN, LABELS, TRAIN[:0], LABELS[:0], 3)


def test_non_finite_features_give_nan_never_class_0():
    # argmax over NaN scores answers class 0: with every query of class 0 that read as 100 %
    queries, labels = torch.tensor([[1.0, 0.1], [0.1, 1.0]]), torch.tensor([0, 0])
    for bad in (float("nan"), float("inf")):
        broken = TRAIN.clone()
        broken[1, 0] = bad
        assert math.isnan(knn_accuracy(broken, LABELS, queries, labels, 3, k=1))
        assert math.isnan(knn_accuracy(TRAIN, LABELS, queries * bad, labels, 3, k=1))


def _offset_blobs(seed: int, n: int = 400):
    """Post-ReLU-like features: 10 weak class means on a large common positive offset (cosines ~0.95)."""
    gen = torch.Generator().manual_seed(seed)
    means = 0.5 * torch.randn(10, 128, generator=torch.Generator().manual_seed(99))
    labels = torch.arange(n) % 10
    return torch.relu(10.0 + means[labels] + 2.0 * torch.randn(n, 128, generator=gen)), labels


def test_centring_removes_a_common_offset_that_cosine_votes_drown_in():
    train, train_y = _offset_blobs(0)
    test, test_y = _offset_blobs(1)
    plain = knn_accuracy(train, train_y, test, test_y, 10, normalization="cosine")
    centred = knn_accuracy(train, train_y, test, test_y, 10, normalization="centered")
    assert centred > plain + 3
    # centring subtracts the training mean from both sides: a shared shift of every feature changes nothing
    shifted = knn_accuracy(train + 5, train_y, test + 5, test_y, 10, normalization="centered")
    assert shifted == pytest.approx(centred)
    train_n, test_n = normalize_knn_features(train, test, "standardized")
    torch.testing.assert_close(train_n.norm(dim=1), torch.ones(len(train)))
    with pytest.raises(ValueError, match="'l2'.*cosine"):
        knn_accuracy(train, train_y, test, test_y, 10, normalization="l2")
