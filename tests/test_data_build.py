"""The resumable sample stream, per-sample seeding, and the dataset's handling of bad input."""

import json
import random

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from pretrain_testing import write_tiny_images

from soco.config import add_soco_config
from soco.data.build import PretrainDataset, StreamSampler, build_pretrain_dataset, seed_sample_rngs
from soco_proposals.image_list import list_images


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_stream_visits_every_image_once_per_pass():
    positions = _take(iter(StreamSampler(7, seed=3)), 21)
    for p in range(3):
        assert sorted(i for i, _ in positions[7 * p : 7 * (p + 1)]) == list(range(7))
    assert [pos for _, pos in positions] == list(range(21))
    assert positions[:7] != positions[7:14], "each pass should be a new permutation"


def test_stream_resumes_and_splits_across_ranks():
    full = _take(iter(StreamSampler(5, seed=1)), 20)
    assert _take(iter(StreamSampler(5, seed=1, start_position=8)), 12) == full[8:]
    rank0 = _take(iter(StreamSampler(5, seed=1, rank=0, world_size=2)), 10)
    rank1 = _take(iter(StreamSampler(5, seed=1, rank=1, world_size=2)), 10)
    assert rank0 == full[0::2] and rank1 == full[1::2]


def test_sample_seeding_is_a_function_of_position():
    seed_sample_rngs(0, 41)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_sample_rngs(0, 42)
    seed_sample_rngs(0, 41)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


class _EchoViews:
    def __call__(self, image, proposals):
        return {
            "size": torch.tensor(image.size),
            "num_proposals": torch.tensor(-1 if proposals is None else len(proposals)),
        }


def test_dataset_replaces_unreadable_images_and_counts_them(tmp_path, caplog):
    root = write_tiny_images(tmp_path / "imgs", count=3)
    (root / "img_001.jpg").write_bytes(b"not a jpeg")
    dataset = PretrainDataset(list_images(root), None, _EchoViews(), seed=0)
    sample = dataset[(1, 0)]
    assert sample["image_index"].item() == 2
    assert dataset.num_unreadable == 1
    assert "img_001.jpg" in caplog.text and "1 unreadable so far" in caplog.text


def _cfg(root, proposals):
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.SEED = 0
    cfg.PRETRAIN.DATA.IMAGE_ROOT = str(root)
    cfg.PRETRAIN.DATA.PROPOSALS = str(proposals)
    return cfg


def test_missing_proposals_fall_back_and_a_wrong_file_is_an_error(tmp_path, monkeypatch):
    from soco.data import build

    monkeypatch.setitem(build.VIEW_GENERATOR_REGISTRY._obj_map, "SoCoFPNViews", lambda cfg: _EchoViews())
    root = write_tiny_images(tmp_path / "imgs", count=3)
    good = tmp_path / "props.json"
    good.write_text(json.dumps({"img_000": [[1, 2, 30, 20], [0, 0, 10, 10]], "img_001": []}))
    dataset = build_pretrain_dataset(_cfg(root, good))
    counts = [dataset[(i, i)]["num_proposals"].item() for i in range(3)]
    assert counts == [2, 0, 0]
    wrong = tmp_path / "other.json"
    wrong.write_text(json.dumps({"n0000_1": [[1, 2, 3, 4]]}))
    with pytest.raises(ValueError, match="none of the 3 images"):
        build_pretrain_dataset(_cfg(root, wrong))


def test_empty_image_root_is_a_clear_error():
    with pytest.raises(ValueError, match="the image root is empty"):
        list_images("")


def test_soco_views_refuse_a_config_without_proposals(tmp_path):
    root = write_tiny_images(tmp_path / "imgs", count=2)
    cfg = _cfg(root, "")
    cfg.PRETRAIN.DATA.VIEW_GENERATOR = "SoCoFPNViews"
    with pytest.raises(ValueError, match="SoCoFPNViews needs proposals"):
        build_pretrain_dataset(cfg)
