"""Chance levels of the probes (``soco.evaluation.offline.chance_levels``) over the images the probes use."""

import logging

import numpy as np
import torch

from soco.evaluation.datasets import ProbeSample, ProbeSplit
from soco.evaluation.offline import chance_levels
from soco.evaluation.probes import PROBE_KEYS, ProbeData
from soco_proposals.image_io import ImageDecodeError


class LabelSplit(ProbeSplit):
    """One class per image; the images of ``broken`` cannot be decoded."""

    def __init__(self, labels: list[int], broken: set[int] = frozenset(), name: str = "split"):
        super().__init__(name)
        self.labels, self.broken = labels, broken

    def __len__(self) -> int:
        return len(self.labels)

    def sample_labels(self, index: int) -> np.ndarray:
        return np.array([self.labels[index]], dtype=np.int64)

    def load(self, index: int) -> ProbeSample:
        if index in self.broken:
            raise ImageDecodeError("truncated", f"image{index}.jpg", "cut short")
        return ProbeSample(torch.zeros(3, 4, 4, dtype=torch.uint8), None, torch.tensor([self.labels[index]]))


def test_chance_counts_only_images_that_decode():
    train_labels, val_labels = [0, 0, 0, 1, 1], [0, 1, 1, 1]
    # every image decodes: class 0 leads training (3 of 5) and is 1 of the 4 val images
    every = ProbeData(LabelSplit(train_labels), LabelSplit(val_labels))
    assert chance_levels(every) == {"probe/image_knn": 25.0}
    # two class-0 training images and the class-0 val image do not: class 1 leads (2 of 3), all 3 val images
    train, val = LabelSplit(train_labels, broken={0, 1}), LabelSplit(val_labels, broken={0})
    assert chance_levels(ProbeData(train, val)) == {"probe/image_knn": 100.0}
    assert set(train.failures) == {0, 1} and set(val.failures) == {0}


def test_a_probe_without_decoded_images_has_no_chance_level(caplog):
    boxes = LabelSplit([2, 2, 1], name="boxes")
    data = ProbeData(LabelSplit([0, 1], broken={0, 1}), LabelSplit([0, 1]), box_train=boxes, box_test=boxes)
    with caplog.at_level(logging.ERROR, logger="soco.evaluation.offline"):
        chance = chance_levels(data)
    assert set(chance) == {key for key in PROBE_KEYS if key.startswith("probe/object_")}
    assert "probe/image_knn: no chance level: 0 training and 2 test labels" in caplog.text
