import json

import numpy as np
import pytest
from corpus_testing import write_bad_images, zip_tree
from PIL import Image

import soco_proposals.generate as generate
from soco_proposals.corpus_index import write_corpus_index
from soco_proposals.generate import (
    generate_shard,
    load_rgb_array,
    propose_image,
    scale_boxes_back,
    shard_records,
)
from soco_proposals.image_io import DECODE_FAILURES
from soco_proposals.raw_shards import find_shards, iter_shard_proposals, list_chunks
from soco_proposals.selective_search import selective_search


def _blocks(rng, height, width):
    """An RGB image of a few flat rectangles on noise: selective search finds nested regions in it."""
    image = rng.integers(90, 110, (height, width, 3), dtype=np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, height - 20), rng.integers(0, width - 20)
        image[y : y + rng.integers(15, height - y), x : x + rng.integers(15, width - x)] = rng.integers(
            0, 256, 3
        )
    return image


@pytest.fixture
def corpus(tmp_path):
    """An ImageNet-style tree with good images and every kind of awkward file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    for wnid in ("n001", "n002"):
        (root / wnid).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(_blocks(rng, 60, 80)).save(root / wnid / f"{wnid}_{i}.JPEG", quality=95)
    odd = root / "n003"
    odd.mkdir()
    Image.fromarray(_blocks(rng, 50, 70)[:, :, 0]).save(odd / "n003_gray.JPEG")
    Image.fromarray(_blocks(rng, 50, 70)).convert("CMYK").save(odd / "n003_cmyk.JPEG")
    rgba = np.dstack([_blocks(rng, 50, 70), np.full((50, 70), 200, np.uint8)])
    Image.fromarray(rgba).save(odd / "n003_rgba.png")
    Image.fromarray(_blocks(rng, 40, 40)).quantize(16).save(odd / "n003_palette.png")
    Image.fromarray(_blocks(rng, 50, 70)[:20, :25]).save(odd / "n003_tiny.JPEG")
    (odd / "n003_corrupt.JPEG").write_bytes(b"\xff\xd8 definitely not a jpeg")
    full = (root / "n001" / "n001_0.JPEG").read_bytes()
    (odd / "n003_truncated.JPEG").write_bytes(full[: len(full) // 2])
    return root


def _all_results(output):
    return {r.key: r for r in iter_shard_proposals(find_shards([output]))}


def test_generate_records_every_image_and_logs_failures(corpus, tmp_path):
    output = tmp_path / "raw"
    summary = generate_shard(corpus, output, chunk_size=4, progress=False)
    assert summary["images"] == 13 and summary["failed"] == 2
    assert summary["notes"] == {"mode": 4, "format": 2, "tiny": 1}
    results = _all_results(output)
    assert len(results) == 13
    assert {key for key, r in results.items() if r.failed} == {"n003_corrupt", "n003_truncated"}
    good = results["n001_1"]
    assert good.image_size == (60, 80) and good.boxes.dtype == np.uint16
    image = np.asarray(Image.open(corpus / "n001" / "n001_1.JPEG").convert("RGB"))
    np.testing.assert_array_equal(good.boxes, selective_search(image))
    assert results["n003_tiny"].image_size == (20, 25)
    log = (output / "shard-00000-of-00001" / "errors.log").read_text()
    assert "FAILED" in log and "n003_corrupt.JPEG" in log and "n003_truncated.JPEG" in log
    assert "mode:CMYK->RGB" in log and "tiny:20x25" in log


def test_resume_after_kill_loses_and_duplicates_nothing(corpus, tmp_path, monkeypatch):
    output = tmp_path / "raw"
    reference = generate_shard(corpus, tmp_path / "ref", chunk_size=3, progress=False)
    calls = []
    original_write = generate.write_chunk

    def killed_on_third_chunk(path, results):
        if len(calls) == 2:
            path.with_name(f".{path.name}.tmp-123").write_bytes(b"partial")  # what a kill leaves
            raise KeyboardInterrupt
        calls.append(path)
        original_write(path, results)

    monkeypatch.setattr(generate, "write_chunk", killed_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        generate_shard(corpus, output, chunk_size=3, progress=False)
    shard = output / "shard-00000-of-00001"
    assert len(list_chunks(shard)) == 2 and not (shard / "summary.json").exists()
    with pytest.raises(ValueError, match="unfinished"):
        find_shards([output])

    monkeypatch.setattr(generate, "write_chunk", original_write)
    processed = []
    original_propose = generate.propose_image
    monkeypatch.setattr(
        generate,
        "propose_image",
        lambda record, **kw: processed.append(record.key) or original_propose(record, **kw),
    )
    summary = generate_shard(corpus, output, chunk_size=3, progress=False)
    assert len(processed) == 13 - 6 and len(set(processed)) == len(processed)
    assert summary["images"] == reference["images"] and summary["boxes"] == reference["boxes"]
    assert not any(p.name.startswith(".") for p in shard.iterdir())
    resumed, fresh = _all_results(output), _all_results(tmp_path / "ref")
    assert resumed.keys() == fresh.keys()
    for key in fresh:
        np.testing.assert_array_equal(resumed[key].boxes, fresh[key].boxes)
    processed.clear()
    generate_shard(corpus, output, chunk_size=3, progress=False)  # all done: nothing recomputed
    assert processed == []


def test_rerun_with_other_settings_is_refused(corpus, tmp_path):
    generate_shard(corpus, tmp_path / "raw", chunk_size=20, progress=False)
    with pytest.raises(ValueError, match="chunk_size: 20 on disk, 5 now"):
        generate_shard(corpus, tmp_path / "raw", chunk_size=5, progress=False)


def test_shards_are_disjoint_and_complete_with_workers(corpus, tmp_path):
    output = tmp_path / "raw"
    generate_shard(corpus, output, num_shards=2, shard_id=1, workers=2, chunk_size=2, progress=False)
    with pytest.raises(ValueError, match=r"shards \[0\] of 2 are missing"):
        find_shards([output])
    assert len(list(iter_shard_proposals(find_shards([output], allow_incomplete=True)))) == 6
    generate_shard(corpus, output, num_shards=2, shard_id=0, workers=1, chunk_size=2, progress=False)
    keys = [r.key for r in iter_shard_proposals(find_shards([output]))]
    assert len(keys) == len(set(keys)) == 13
    config = json.loads((output / "shard-00001-of-00002" / "config.json").read_text())
    assert config["num_images"] == 6
    with pytest.raises(ValueError, match="shard id 2"):
        shard_records([], 2, 2)


def test_load_rgb_array_conversions(corpus):
    for name, note in [("n003_gray.JPEG", "mode:L->RGB"), ("n003_palette.png", "mode:P->RGB")]:
        image, notes = load_rgb_array(str(corpus / "n003" / name))
        assert image.dtype == np.uint8 and image.shape[2] == 3 and note in notes


def test_max_size_maps_boxes_back_to_original_pixels(corpus, tmp_path):
    image = np.asarray(Image.open(corpus / "n001" / "n001_2.JPEG"))
    big = np.kron(image, np.ones((3, 3, 1), dtype=np.uint8))  # (180, 240)
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    record = generate.ImageRecord(path=str(path), key="big")
    result = propose_image(record, "reference", max_size=80)
    assert result.image_size == (180, 240) and len(result.boxes) > 0
    boxes = result.boxes.astype(int)
    assert (boxes[:, 0] + boxes[:, 2]).max() == 239 and (boxes[:, 1] + boxes[:, 3]).max() == 179
    # a box on resized pixels 1..2 of 3x-downscaled columns covers original pixels 3..8
    np.testing.assert_array_equal(
        scale_boxes_back(np.array([[1, 0, 1, 0]]), (10, 10), (30, 30)), [[3, 0, 5, 2]]
    )


def test_every_kind_of_bad_file_is_recorded_and_the_run_continues(corpus, tmp_path):
    bad = write_bad_images(corpus / "n004")
    (corpus / "n004" / "bad_unreadable.jpg").symlink_to(tmp_path / "gone.jpg")  # a dangling link
    summary = generate_shard(corpus, tmp_path / "raw", chunk_size=4, progress=False)
    assert summary["images"] == 13 + len(bad) + 1 and summary["failed"] == 2 + len(bad) + 1
    for kind in DECODE_FAILURES:
        assert summary["failures"].get(kind, 0) >= 1, kind
    results = _all_results(tmp_path / "raw")
    for kind in bad:
        assert results[f"bad_{kind}"].error.startswith(f"{kind}: "), results[f"bad_{kind}"].error
    log = (tmp_path / "raw" / "shard-00000-of-00001" / "errors.log").read_text()
    assert all(f"FAILED\t{path}\t{kind}: " in log for kind, path in bad.items())
    assert not results["n001_0"].failed and len(results["n001_0"].boxes) > 0


def test_zip_input_and_an_index_give_the_folder_proposals(corpus, tmp_path):
    folder = generate_shard(corpus, tmp_path / "from_folder", chunk_size=5, progress=False)
    archive = zip_tree(corpus, tmp_path / "train.zip")
    zipped = generate_shard(archive, tmp_path / "from_zip", chunk_size=5, workers=2, progress=False)
    index = tmp_path / "index.txt"
    write_corpus_index(archive, index)
    indexed = generate_shard(archive, tmp_path / "indexed", chunk_size=5, progress=False, corpus_index=index)
    assert folder["keys_sha1"] == zipped["keys_sha1"] == indexed["keys_sha1"]
    reference = _all_results(tmp_path / "from_folder")
    for output in ("from_zip", "indexed"):
        results = _all_results(tmp_path / output)
        assert results.keys() == reference.keys()
        for key, result in reference.items():
            assert results[key].error.split(":")[0] == result.error.split(":")[0]
            np.testing.assert_array_equal(results[key].boxes, result.boxes)
    log = (tmp_path / "from_zip" / "shard-00000-of-00001" / "errors.log").read_text()
    assert "train.zip@/n003/n003_truncated.JPEG" in log
