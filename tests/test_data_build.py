"""The resumable sample stream, per-sample seeding, and the dataset's handling of bad input."""

import json
import logging
import os
import random
import time

import numpy as np
import pytest
import torch
from corpus_testing import write_bad_images, zip_tree
from detectron2.config import get_cfg
from distributed_testing import run_distributed
from PIL import Image
from pretrain_testing import write_tiny_images

from soco.config import add_soco_config
from soco.data.build import (
    MAX_DECODE_ATTEMPTS,
    SKIPPED_IMAGES,
    PretrainDataset,
    StreamSampler,
    build_pretrain_dataset,
    build_pretrain_train_loader,
    count_images,
    seed_sample_rngs,
)
from soco.data.corpus import pretrain_images
from soco_proposals.corpus_index import StaleCorpusIndexError
from soco_proposals.image_io import DECODE_FAILURES
from soco_proposals.image_list import IMAGE_EXTENSIONS, ImageRecord, list_images
from soco_proposals.store import failed_images_file, write_store


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_stream_visits_every_image_once_per_pass():
    positions = _take(iter(StreamSampler(7, seed=3)), 21)
    for p in range(3):
        assert sorted(i for i, _ in positions[7 * p : 7 * (p + 1)]) == list(range(7))
    assert [pos for _, pos in positions] == list(range(21))
    assert positions[:7] != positions[7:14], "each pass should be a new permutation"


def test_a_shorter_pass_is_the_start_of_each_pass_permutation():
    full = _take(iter(StreamSampler(7, seed=3)), 21)
    cut = _take(iter(StreamSampler(7, seed=3, pass_length=4)), 12)  # epochs that drop 3 images
    for p in range(3):
        assert [i for i, _ in cut[4 * p : 4 * (p + 1)]] == [i for i, _ in full[7 * p : 7 * p + 4]]
    assert [pos for _, pos in cut] == list(range(12))
    with pytest.raises(ValueError, match="pass_length 8 must be in 1..7"):
        StreamSampler(7, seed=3, pass_length=8)


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
    assert sample["image_index"].item() in (0, 2), "replaced by a readable image"
    assert sample[SKIPPED_IMAGES].tolist() == [int(kind == "not_an_image") for kind in DECODE_FAILURES]
    assert "img_001.jpg" in caplog.text and "not_an_image" in caplog.text
    again = dataset[(1, 0)]
    assert again["image_index"].item() == sample["image_index"].item(), "the replacement is seeded"
    assert dataset[(0, 1)][SKIPPED_IMAGES].sum() == 0
    assert sum("img_001.jpg" in r.getMessage() for r in caplog.records) == 1, "each bad file is logged once"


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


# --- records, corpus index, zip input, excluded and bad images ------------------------------------------


def _soco_cfg(root, proposals, **data):
    """Small real SoCo FPN views (so samples carry every kind of tensor), PRETRAIN.DATA overrides."""
    cfg = _cfg(root, proposals)
    cfg.SOCO.VIEWS.SIZES = [48, 48, 24]
    cfg.SOCO.BOXES.LEVEL_THRESHOLDS = [12, 24, 36, 48]
    for key, value in data.items():
        cfg.PRETRAIN.DATA[key] = value
    return cfg


def _old_records(root):
    """The record list of the implementation before serialized records: os.walk, sorted, absolute paths."""
    records = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.abspath(os.path.join(dirpath, name))
                records.append(ImageRecord(path=path, key=os.path.basename(path).split(".")[0]))
    return records


def _old_sample(records, proposals, generator, seed, index, position):
    """That implementation's sample: decode with PIL, seed with torch.manual_seed, run the generator."""
    record = records[index]
    with Image.open(record.path) as image:
        image = image.convert("RGB")
    state = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint64)
    random.seed(int(state[0]))
    np.random.seed(int(state[1] % (2**32)))
    torch.manual_seed(int(state[1]))
    boxes = np.asarray(proposals.get(record.key, []), dtype=np.int64).reshape(-1, 4)
    return generator(image, boxes)


def _assert_same_samples(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture
def classes(tmp_path):
    """Two class folders of tiny images and a SoCo JSON with boxes for every image."""
    root = tmp_path / "train"
    for wnid in ("n02", "n01"):
        write_tiny_images(root / wnid, count=4, seed=len(wnid) + ord(wnid[-1]))
        for path in (root / wnid).glob("img_*.jpg"):
            path.rename(path.with_name(f"{wnid}_{path.name}"))
    proposals = {r.key: [[2, 3, 30, 20], [10, 8, 40, 30], [0, 0, 20, 50]] for r in list_images(root)}
    path = tmp_path / "props.json"
    path.write_text(json.dumps(proposals))
    return root, path, proposals


def test_serialized_records_give_the_samples_of_the_record_list(classes):
    root, proposals_file, proposals = classes
    dataset = build_pretrain_dataset(_soco_cfg(root, proposals_file))
    old = _old_records(root)
    assert [(r.path, r.key) for r in dataset.records] == [(r.path, r.key) for r in old]
    sampler = iter(StreamSampler(len(old), seed=0))
    for _ in range(10):
        index, position = next(sampler)
        expected = _old_sample(old, proposals, dataset.view_generator, 0, index, position)
        sample = dataset[(index, position)]
        assert sample.pop(SKIPPED_IMAGES).sum() == 0 and sample.pop("image_index").item() == index
        _assert_same_samples(sample, expected)


@pytest.mark.parametrize("with_map", [True, False])
def test_zip_and_folder_layouts_give_identical_samples(classes, tmp_path, with_map):
    root, proposals_file, _ = classes
    archive = zip_tree(root, tmp_path / "train.zip", with_map=with_map)
    from_folder = build_pretrain_dataset(_soco_cfg(root, proposals_file))
    from_zip = build_pretrain_dataset(_soco_cfg(archive, proposals_file))
    assert from_zip.records.is_zip
    assert [r.key for r in from_zip.records] == [r.key for r in from_folder.records]
    for index, position in [(0, 0), (3, 17), (7, 5), (5, 1000)]:
        _assert_same_samples(from_zip[(index, position)], from_folder[(index, position)])


def test_the_corpus_index_is_written_once_then_read_never_rebuilt(classes, tmp_path, monkeypatch):
    from soco_proposals import corpus_index

    root, proposals_file, _ = classes
    index = tmp_path / "cache" / "corpus_index.txt"
    cfg = _soco_cfg(root, proposals_file, CORPUS_INDEX=str(index))
    first = build_pretrain_dataset(cfg)
    assert index.is_file() and len(first) == 8
    monkeypatch.setattr(corpus_index, "list_corpus", lambda root: pytest.fail("listed the corpus again"))
    second = build_pretrain_dataset(cfg)
    assert [r.path for r in second.records] == [r.path for r in first.records] and count_images(cfg) == 8
    time.sleep(0.05)
    (root / "n01" / "n01_extra.jpg").write_bytes((root / "n01" / "n01_img_000.jpg").read_bytes())
    with pytest.raises(StaleCorpusIndexError, match="build_corpus_index.py"):
        build_pretrain_dataset(cfg)


def test_images_that_failed_proposal_generation_are_left_out(classes, tmp_path, caplog):
    root, proposals_file, proposals = classes
    failed = failed_images_file(proposals_file)
    assert failed.name == "propsfailed_images.txt"
    failed.write_text("n01_img_001\nn09_not_in_corpus\n")
    caplog.set_level(logging.INFO, logger="soco.data")
    dataset = build_pretrain_dataset(_soco_cfg(root, proposals_file))
    keys = [r.key for r in dataset.records]
    assert len(keys) == 7 and "n01_img_001" not in keys
    assert f"left out 1 images listed in {failed} (1 of its 2 keys are not in the corpus)" in caplog.text
    assert len(build_pretrain_dataset(_soco_cfg(root, proposals_file, EXCLUDE_FAILED=False))) == 8
    explicit = tmp_path / "exclude.txt"
    explicit.write_text(f"{root}/n02/n02_img_003.jpg\n\nn02_img_000\n")
    dataset = build_pretrain_dataset(_soco_cfg(root, proposals_file, EXCLUDE_LIST=str(explicit)))
    assert len(dataset) == 5 and {"n02_img_003", "n02_img_000", "n01_img_001"}.isdisjoint(
        r.key for r in dataset.records
    )
    store = tmp_path / "store"
    write_store(store, proposals, failed_keys=["n02_img_002"])
    from_store = build_pretrain_dataset(_soco_cfg(root, store))
    assert len(from_store) == 7 and "n02_img_002" not in [r.key for r in from_store.records]
    with pytest.raises(FileNotFoundError, match="EXCLUDE_LIST"):
        build_pretrain_dataset(_soco_cfg(root, store, EXCLUDE_LIST=str(tmp_path / "nope.txt")))


def _cfg_with_bad_images(tmp_path, workers):
    root = write_tiny_images(tmp_path / "imgs", count=4)
    write_bad_images(root)
    (root / "bad_unreadable.jpg").symlink_to(tmp_path / "gone.jpg")
    cfg = _cfg(root, "")
    cfg.PRETRAIN.DATA.VIEW_GENERATOR = "MoCoV2Views"
    cfg.MOCO.VIEWS.SIZE = 16
    cfg.SOLVER.IMS_PER_BATCH = 5
    cfg.DATALOADER.NUM_WORKERS = workers
    return cfg


@pytest.mark.parametrize("workers", [0, 2])
def test_every_kind_of_bad_image_is_skipped_counted_and_logged(tmp_path, caplog, workers):
    cfg = _cfg_with_bad_images(tmp_path, workers)
    loader = build_pretrain_train_loader(cfg)
    assert len(loader.dataset) == 10
    batches = iter(loader)
    indices = [i for _ in range(6) for i in next(batches)["image_index"].tolist()]  # three passes
    good = {i for i, r in enumerate(loader.dataset.records) if r.key.startswith("img_")}
    assert set(indices) == good, "only decodable images reach the batches"
    skipped = dict(zip(DECODE_FAILURES, loader.skipped.tolist(), strict=True))
    assert all(count >= 3 for count in skipped.values()), skipped  # each bad file sampled once per pass
    if workers == 0:
        for kind in DECODE_FAILURES:
            assert f"bad_{kind}" in caplog.text


def test_skip_counts_do_not_depend_on_the_number_of_workers(tmp_path):
    counts = []
    for workers in (0, 2):
        loader = build_pretrain_train_loader(_cfg_with_bad_images(tmp_path / str(workers), workers))
        batches = iter(loader)
        for _ in range(4):
            next(batches)
        counts.append(loader.skipped.tolist())
    assert counts[0] == counts[1] and sum(counts[0]) > 0


def test_a_corpus_of_only_bad_images_is_an_error_not_an_endless_loop(tmp_path):
    root = tmp_path / "bad"
    write_bad_images(root)
    dataset = PretrainDataset(list_images(root), None, _EchoViews(), seed=0)
    with pytest.raises(RuntimeError, match=f"{MAX_DECODE_ATTEMPTS} images drawn in a row .* could not"):
        dataset[(0, 0)]


def _index_across_ranks(root: str, index: str) -> None:
    import torch.distributed as dist

    from soco_proposals import corpus_index

    if dist.get_rank() != 0:  # only rank 0 may walk the corpus
        corpus_index.list_corpus = lambda root: pytest.fail("a rank other than 0 listed the corpus")
    cfg = _cfg(root, "")
    cfg.PRETRAIN.DATA.CORPUS_INDEX = index
    images = pretrain_images(cfg)
    assert len(images) == 3 and images[0].key == "img_000"


def test_rank_zero_writes_the_index_and_every_rank_reads_it(tmp_path):
    root = write_tiny_images(tmp_path / "imgs", count=3)
    index = tmp_path / "shared" / "index.txt"
    run_distributed(_index_across_ranks, tmp_path, str(root), str(index))
    assert index.is_file()
