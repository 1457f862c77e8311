import json
import pickle

import numpy as np
import pytest

from soco_proposals.store import (
    JsonProposals,
    StoreProposals,
    failed_images_file,
    json_to_store,
    open_proposals,
    store_to_json,
    write_soco_json,
    write_store,
)

PROPOSALS = {
    "n01440764_10026": [[0, 0, 31, 40], [5, 6, 100, 200]],
    "n01440764_2": [],
    "a": [[65535, 0, 1, 2]],
    "ILSVRC2012_val_00000001": [[1, 2, 3, 4], [1, 2, 3, 4], [9, 9, 9, 9]],
    "é_unicode": [[7, 7, 7, 7]],
}


def _write_json(tmp_path, data=PROPOSALS, name="train_ratio3size0308post.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _as_lists(source):
    return {key: source[key].tolist() for key in source}


def test_json_store_json_round_trip(tmp_path):
    json_path = _write_json(tmp_path)
    store_path = json_to_store(json_path, tmp_path / "props.store")
    store = open_proposals(store_path)
    assert isinstance(store, StoreProposals)
    assert len(store) == len(PROPOSALS)
    assert _as_lists(store) == PROPOSALS
    back = store_to_json(store_path, tmp_path / "back.json")
    assert json.loads(back.read_text()) == PROPOSALS


def test_open_json_and_store_agree(tmp_path):
    json_source = open_proposals(_write_json(tmp_path))
    assert isinstance(json_source, JsonProposals)
    store = open_proposals(write_store(tmp_path / "s", PROPOSALS))
    for key in PROPOSALS:
        for source in (json_source, store):
            boxes = source[key]
            assert boxes.dtype == np.int64 and boxes.shape == (len(PROPOSALS[key]), 4)
            assert key in source
    assert sorted(store.keys()) == sorted(json_source.keys()) == sorted(PROPOSALS)
    for missing in ("n01440764", "n01440764_10026x", "", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 3):
        assert missing not in store and missing not in json_source
    with pytest.raises(KeyError):
        store["n01440764_1002"]


def test_store_sizes_and_pickle_is_lazy(tmp_path):
    sizes = {key: (100 + i, 200 + i) for i, key in enumerate(PROPOSALS)}
    store = open_proposals(write_store(tmp_path / "s", PROPOSALS, image_sizes=sizes))
    assert store["a"].tolist() == [[65535, 0, 1, 2]]  # opens the memory maps
    blob = pickle.dumps(store)
    assert len(blob) < 2000  # only the path and meta travel, never the arrays
    clone = pickle.loads(blob)
    assert clone._arrays is None
    assert clone.image_size("n01440764_2") == sizes["n01440764_2"]
    assert _as_lists(clone) == PROPOSALS
    json_source = open_proposals(_write_json(tmp_path))
    len(json_source)
    assert len(pickle.dumps(json_source)) < 2000


def test_write_store_rejects_bad_boxes_and_existing(tmp_path):
    with pytest.raises(ValueError, match="'k'.*shape"):
        write_store(tmp_path / "a", {"k": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="'k'.*65535"):
        write_store(tmp_path / "b", {"k": [[1, 2, 3, 65536]]})
    with pytest.raises(ValueError, match="'k'.*integers"):
        write_store(tmp_path / "c", {"k": [[1, 2, 3, 4.5]]})
    with pytest.raises(ValueError, match="no image size"):
        write_store(tmp_path / "d", {"k": [[1, 2, 3, 4]]}, image_sizes={})
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left behind
    write_store(tmp_path / "e", {"k": [[1, 2, 3, 4]]})
    with pytest.raises(FileExistsError):
        write_store(tmp_path / "e", {"k": []})
    write_store(tmp_path / "e", {"k": []}, overwrite=True)
    assert open_proposals(tmp_path / "e")["k"].shape == (0, 4)


def test_open_proposals_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        open_proposals(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(ValueError, match="x.txt"):
        open_proposals(tmp_path / "x.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="missing keys.npy"):
        open_proposals(tmp_path / "empty_dir")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json"):
        len(open_proposals(tmp_path / "list.json"))


def test_store_detects_inconsistent_arrays(tmp_path):
    store_path = write_store(tmp_path / "s", PROPOSALS)
    np.save(store_path / "offsets.npy", np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="offsets.npy"):
        open_proposals(store_path)["a"]


def test_write_soco_json_matches_json_dump(tmp_path):
    path = write_soco_json(tmp_path / "out.json", {k: np.asarray(v) for k, v in PROPOSALS.items()})
    assert path.read_text() == json.dumps(PROPOSALS)


def test_store_is_compact_and_handles_many_distinct_boxes(tmp_path):
    rng = np.random.default_rng(0)
    proposals = {f"img{i}": rng.integers(0, 500, (8, 4))[rng.integers(0, 8, 40)] for i in range(50)}
    proposals["raw_like"] = rng.integers(0, 4000, (700, 4))  # > 256 distinct boxes: wider index
    path = write_store(tmp_path / "s", proposals)
    store = open_proposals(path)
    for key, boxes in proposals.items():
        np.testing.assert_array_equal(store[key], boxes)
    assert np.load(path / "box_index.npy").dtype == np.uint16
    packed_bytes = (path / "packed.npy").stat().st_size
    assert packed_bytes < 0.3 * 8 * sum(len(b) for b in proposals.values())  # vs plain uint16 xywh


def test_vectorised_membership_agrees_with_lookups(tmp_path):
    store = open_proposals(write_store(tmp_path / "s", PROPOSALS))
    json_source = open_proposals(_write_json(tmp_path))
    queries = list(PROPOSALS) + ["n01440764_1002", "n01440764_10026x", "z" * 40, "0"]
    keys = np.array([q.encode("utf-8") for q in queries])
    expected = [q in PROPOSALS for q in queries]
    assert store.contains_keys(keys).tolist() == expected == json_source.contains_keys(keys).tolist()
    assert store.contains_keys(keys[:0]).tolist() == []


def test_the_failed_image_list_sits_next_to_the_proposals(tmp_path):
    json_path = _write_json(tmp_path)
    assert failed_images_file(json_path) == tmp_path / "train_ratio3size0308postfailed_images.txt"
    failed_images_file(json_path).write_text("n02_bad\nn01_bad\n")
    store = json_to_store(json_path, tmp_path / "store")
    assert failed_images_file(store) == store / "failed_images.txt"
    assert failed_images_file(store).read_text() == "n01_bad\nn02_bad\n"
    assert not failed_images_file(write_store(tmp_path / "clean", PROPOSALS)).exists()
