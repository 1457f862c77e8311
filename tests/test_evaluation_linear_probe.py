"""The linear probe: learns separable data, deterministic for a seed, standardised with train statistics."""

import math

import torch

from soco.evaluation import fit_linear_probe, linear_probe_accuracy


def _blobs(seed: int, n: int = 60, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    features = (centres[labels] + 0.5 * torch.randn(n, 3, generator=gen)) * scale + 100.0
    return features, labels


def test_separable_blobs_are_classified_perfectly_whatever_their_offset_and_scale():
    train_x, train_y = _blobs(0, scale=1000.0)
    test_x, test_y = _blobs(1, n=30, scale=1000.0)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y, 3, steps=100, lr=0.05) == 100.0


def test_labels_without_structure_stay_near_chance_on_new_data():
    train_x, _ = _blobs(0)
    test_x, _ = _blobs(1, n=300)
    gen = torch.Generator().manual_seed(2)
    shuffled = torch.randint(0, 3, (60,), generator=gen)
    accuracy = linear_probe_accuracy(train_x, shuffled, test_x, torch.randint(0, 3, (300,), generator=gen), 3)
    assert accuracy < 50.0


def test_same_seed_same_probe_other_seed_other_minibatches():
    train_x, train_y = _blobs(0)
    first = fit_linear_probe(train_x, train_y, 3, steps=20, batch_size=16, seed=5)
    again = fit_linear_probe(train_x, train_y, 3, steps=20, batch_size=16, seed=5)
    other = fit_linear_probe(train_x, train_y, 3, steps=20, batch_size=16, seed=6)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first[0], other[0])
    test_x, test_y = _blobs(1, n=30)
    kwargs = {"steps": 20, "batch_size": 16, "seed": 5}
    accuracies = {linear_probe_accuracy(train_x, train_y, test_x, test_y, 3, **kwargs) for _ in range(2)}
    assert len(accuracies) == 1


def test_non_finite_features_give_nan_never_an_accuracy():
    train_x, train_y = _blobs(0)
    test_x, _ = _blobs(1, n=30)
    zeros = torch.zeros(30, dtype=torch.long)  # argmax over NaN logits is class 0: 100 % on these labels
    broken = train_x.clone()
    broken[3, 1] = float("nan")
    assert math.isnan(linear_probe_accuracy(broken, train_y, test_x, zeros, 3, steps=5))
    assert math.isnan(linear_probe_accuracy(train_x, train_y, test_x * float("inf"), zeros, 3, steps=5))
    assert math.isnan(linear_probe_accuracy(train_x * float("nan"), train_y, test_x, zeros, 3, steps=5))
