import json

import numpy as np
import pytest

from soco_proposals.filter_pipeline import filter_proposals, post_fix_proposals
from soco_proposals.raw_shards import (
    SUMMARY_FILE,
    ImageProposals,
    chunk_path,
    read_chunk,
    shard_dir_name,
    write_chunk,
)
from soco_proposals.store import open_proposals

GOOD = [0, 0, 120, 120]  # passes ratio3size0308 on a 320 x 320 image
LONG = [0, 0, 200, 40]  # ratio 5: only the w, h >= 32 rule keeps it
LONG_RATIO3 = [10, 10, 90, 40]  # ratio 2.25 but too small for size 0.3: the ratio-only fallback keeps it
SMALL = [5, 5, 20, 20]


def _image(key, boxes, error=""):
    size = (0, 0) if error else (320, 320)
    return ImageProposals(key, size, np.array(boxes, dtype=np.uint16).reshape(-1, 4), (), error)


def _write_raw(root, shards):
    """shards: list (per shard id) of lists of chunks of ImageProposals."""
    for shard_id, chunks in enumerate(shards):
        shard = root / shard_dir_name(shard_id, len(shards))
        shard.mkdir(parents=True)
        for index, chunk in enumerate(chunks):
            write_chunk(chunk_path(shard, index), chunk)
        (shard / SUMMARY_FILE).write_text("{}")
    return root


@pytest.fixture
def raw(tmp_path):
    return _write_raw(
        tmp_path / "raw",
        [
            [[_image("img_b", [GOOD, SMALL, GOOD]), _image("img_ratio", [LONG, LONG_RATIO3, SMALL])]],
            [
                [_image("img_a", [SMALL, GOOD]), _image("img_none", [SMALL, LONG])],
                [_image("img_bad", [], "OSError")],
            ],
        ],
    )


def test_chunk_round_trip(tmp_path):
    images = [_image("a", [GOOD, SMALL]), _image("b", []), _image("c", [], "OSError: truncated")]
    images[0].notes = ("mode:L->RGB", "tiny:20x20")
    write_chunk(tmp_path / "chunk-000000.npz", images)
    back = list(read_chunk(tmp_path / "chunk-000000.npz"))
    assert [r.key for r in back] == ["a", "b", "c"]
    assert back[0].boxes.tolist() == [GOOD, SMALL] and back[0].notes == ("mode:L->RGB", "tiny:20x20")
    assert back[1].boxes.shape == (0, 4) and not back[1].failed
    assert back[2].failed and back[2].error == "OSError: truncated" and back[2].image_size == (0, 0)


def test_filter_writes_json_lists_and_store(raw, tmp_path):
    out = tmp_path / "out" / "train_ratio3size0308.json"
    filter_proposals([raw], "ratio3size0308", out, store=tmp_path / "out" / "store")
    proposals = json.loads(out.read_text())
    assert list(proposals) == ["img_a", "img_b", "img_none", "img_ratio"]  # sorted; failed image left out
    assert proposals == {"img_a": [GOOD], "img_b": [GOOD, GOOD], "img_none": [], "img_ratio": []}
    no_props = (tmp_path / "out" / "train_ratio3size0308no_props_images.txt").read_text().split()
    assert no_props == ["img_none", "img_ratio"]
    assert (tmp_path / "out" / "train_ratio3size0308failed_images.txt").read_text().split() == ["img_bad"]
    store = open_proposals(tmp_path / "out" / "store")
    assert {k: store[k].tolist() for k in store} == proposals
    assert store.image_size("img_a") == (320, 320)
    assert (tmp_path / "out" / "store" / "failed_images.txt").read_text().split() == ["img_bad"]


def test_post_fix_uses_ratio_then_min_side(raw, tmp_path):
    out = tmp_path / "train_ratio3size0308.json"
    filter_proposals([raw / "shard-00000-of-00002", raw / "shard-00001-of-00002"], "ratio3size0308", out)
    post = tmp_path / "train_ratio3size0308post.json"
    result = post_fix_proposals([raw], out, post, store=tmp_path / "post.store")
    proposals = json.loads(post.read_text())
    assert proposals["img_ratio"] == [LONG_RATIO3] and proposals["img_none"] == [LONG]
    assert proposals["img_b"] == [GOOD, GOOD] and result.no_proposals == []
    assert {k: v.tolist() for k, v in open_proposals(tmp_path / "post.store").items()} == proposals


def test_filter_refuses_duplicates_and_missing_shards(tmp_path):
    dup = _write_raw(tmp_path / "dup", [[[_image("x", [GOOD])]], [[_image("x", [GOOD])]]])
    with pytest.raises(ValueError, match="'x' appears twice"):
        filter_proposals([dup], "none", tmp_path / "a.json")
    partial = _write_raw(tmp_path / "partial", [[[_image("x", [GOOD])]], [[_image("y", [GOOD])]]])
    (partial / "shard-00001-of-00002" / SUMMARY_FILE).unlink()
    with pytest.raises(ValueError, match="shard-00001-of-00002 is unfinished"):
        filter_proposals([partial], "none", tmp_path / "b.json")
    with pytest.raises(ValueError, match="unknown filter strategy"):
        filter_proposals([partial], "iou05", tmp_path / "c.json", allow_incomplete=True)
    with pytest.raises(FileNotFoundError, match="no-proposal list"):
        post_fix_proposals([partial], tmp_path / "missing.json", tmp_path / "d.json")
