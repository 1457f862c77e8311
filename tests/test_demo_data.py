"""Copy-paste labeled set: exact masks under occlusion, COCO fields, val objects never seen in train; the
Tux Paint stamps (class map, photo filter, pinned fetch); the real-photo corpus."""

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "demo"))  # the demo's modules live next to its scripts

from copy_paste import (  # noqa: E402
    CATEGORIES,
    CutOut,
    build_copy_paste_dataset,
    build_image_folder,
    compose_image,
    is_photo_like,
    load_cutouts,
    mask_to_annotation,
    name_root,
    split_by_source,
    stamp_cutouts,
)
from photos import write_photo_corpus  # noqa: E402
from stamps import StampsUnavailable, deb_name, fetch_stamps, stamps_dir  # noqa: E402

PHOTO_CACHE = REPO / ".data" / "photos"
STAMP_CACHE = REPO / ".data" / "stamps"


def _cutout(category: str, group: str, index: int, size: int = 24) -> CutOut:
    """A square cut-out whose pixels are unique to (group, index)."""
    rng = np.random.default_rng(zlib.crc32(f"{group}#{index}".encode()))
    mask = np.zeros((size, size), bool)
    mask[2:-2, 3:-3] = True
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return CutOut(pixels, mask, category, f"{group}#{index}", group)


def _pools(groups_per_class: int = 4, per_group: int = 2) -> list[CutOut]:
    return [
        _cutout(category, f"{category}/g{g}", i)
        for category in CATEGORIES
        for g in range(groups_per_class)
        for i in range(per_group)
    ]


def _backgrounds(tmp_path: Path) -> dict[str, list[Path]]:
    paths = {}
    for split, shade in (("train", 60), ("val", 190)):
        paths[split] = []
        for k in range(2):
            path = tmp_path / "backgrounds" / f"{split}{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((80, 100, 3), shade + 10 * k, np.uint8)).save(path)
            paths[split].append(path)
    return paths


def test_mask_to_annotation_box_area_polygon():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:18] = True
    ann = mask_to_annotation(mask)
    assert ann["bbox"] == [10.0, 5.0, 8.0, 10.0]
    assert ann["area"] == 80.0 and ann["iscrowd"] == 0
    xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10, 17, 5, 14)
    tiny = np.zeros((20, 30), bool)
    tiny[0:3, 0:3] = True
    assert mask_to_annotation(tiny) is None


def test_composite_masks_are_exact_under_occlusion():
    rng = np.random.default_rng(0)
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    cutouts = []
    for name, colour in colours.items():
        mask = np.zeros((30, 30), bool)
        mask[3:27, 5:25] = True
        cutouts.append(CutOut(np.full((30, 30, 3), colour, np.uint8), mask, name, name, name))
    background = np.full((64, 80, 3), 128, np.uint8)
    for _ in range(10):
        canvas, instances = compose_image(
            background, cutouts, rng, objects_per_image=(3, 4), long_side_range=(20, 30)
        )
        covered = np.zeros(canvas.shape[:2], bool)
        for cutout, mask in instances:
            assert not (covered & mask).any(), "visible masks of two instances overlap"
            covered |= mask
            assert (canvas[mask] == colours[cutout.category]).all(), "a mask covers pixels of another object"
        assert (canvas[~covered] == 128).all(), "object pixels outside every mask"


def test_name_root_puts_variants_of_one_stamp_in_one_group():
    assert {name_root(s) for s in ("gnu-baby-stand", "gnu-baby", "gnu-sitting", "gnu-stand")} == {"gnu"}
    assert name_root("001penny") == "penny" and name_root("Apricot_whole") == name_root("apricot")
    assert name_root("lion-2") == name_root("lion") and name_root("pig_golden2") == "pig"
    assert name_root("001") == "001"


def test_split_by_source_keeps_every_val_object_out_of_train():
    cutouts = _pools(groups_per_class=5, per_group=3)
    splits = split_by_source(cutouts)
    train, val = splits["train"], splits["val"]
    assert len(train) + len(val) == len(cutouts)
    assert not {c.group for c in train} & {c.group for c in val}
    assert not {c.source for c in train} & {c.source for c in val}
    assert not {c.pixel_hash() for c in train} & {c.pixel_hash() for c in val}
    for category in CATEGORIES:
        assert len({c.group for c in val if c.category == category}) == 2  # ceil(5 / 3)
        assert len({c.group for c in train if c.category == category}) == 3
    reversed_val = split_by_source(list(reversed(cutouts)))["val"]
    assert {c.group for c in reversed_val} == {c.group for c in val}  # independent of the input order


def test_split_by_source_refuses_a_class_with_too_few_sources():
    cutouts = _pools(groups_per_class=4) + [_cutout("extra", "extra/g0", 0), _cutout("extra", "extra/g1", 0)]
    with pytest.raises(ValueError, match="class 'extra' has 2 distinct object sources"):
        split_by_source(cutouts, categories=(*CATEGORIES, "extra"))


def test_pixel_hash_tells_identical_cutouts_apart_from_different_ones():
    a, b = _cutout("bird", "bird/a", 0), _cutout("bird", "bird/b", 0)
    copy = CutOut(a.pixels.copy(), a.mask.copy(), "fish", "elsewhere", "other")
    assert a.pixel_hash() == copy.pixel_hash() != b.pixel_hash()


def test_labeled_set_and_probe_folder_use_only_their_split_objects(tmp_path):
    splits = split_by_source(_pools())
    backgrounds = _backgrounds(tmp_path)
    labeled = build_copy_paste_dataset(
        tmp_path / "labeled", backgrounds, splits, num_train=6, num_val=4, size=(96, 72)
    )
    sources = {}
    for split, (json_path, dropped) in labeled.items():
        coco = json.loads(json_path.read_text())
        assert len(coco["images"]) == {"train": 6, "val": 4}[split]
        assert dropped + len(coco["annotations"]) >= 2 * len(coco["images"])
        assert [c["name"] for c in coco["categories"]] == list(CATEGORIES)
        sources[split] = {a["source"] for a in coco["annotations"]}
        assert sources[split] <= {c.source for c in splits[split]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 72 and ann["area"] <= w * h
    assert sources["train"] and sources["val"] and not sources["train"] & sources["val"]

    counts = build_image_folder(
        tmp_path / "probe", backgrounds, splits, train_per_category=2, val_per_category=1, size=(48, 40)
    )
    assert counts == {"train": 2 * len(CATEGORIES), "val": len(CATEGORIES)}
    folder_sources = json.loads((tmp_path / "probe" / "sources.json").read_text())
    for split, per_category in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (tmp_path / "probe" / split).iterdir()) == sorted(CATEGORIES)
        images = sorted((tmp_path / "probe" / split).rglob("*.jpg"))
        assert len(images) == per_category * len(CATEGORIES)
        assert Image.open(images[0]).size == (48, 40)
        assert set(folder_sources[split].values()) <= {c.source for c in splits[split]}
    assert not set(folder_sources["train"].values()) & set(folder_sources["val"].values())


def _write_stamp(root: Path, relative: str, rgba: np.ndarray) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


def _photo(seed: int, size: int = 64) -> np.ndarray:
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(seed).integers(0, 256, (size, size, 3))
    rgba[8:-8, 8:-8, 3] = 255
    return rgba


def test_photo_filter_tells_a_photo_from_a_flat_drawing():
    drawing = np.zeros((64, 64, 4), np.uint8)
    drawing[8:-8, 8:-8] = (200, 30, 30, 255)
    drawing[20:40, 20:40, :3] = (10, 10, 200)
    assert is_photo_like(_photo(0)) and not is_photo_like(drawing)


def test_stamp_cutouts_map_folders_to_classes_and_count_what_they_skip(tmp_path):
    _write_stamp(tmp_path, "animals/birds/crow.png", _photo(1))
    _write_stamp(tmp_path, "animals/birds/crow2.png", _photo(2))
    _write_stamp(tmp_path, "animals/mammals/bears/bear.png", _photo(3))
    _write_stamp(tmp_path, "animals/birds/cartoon/tweety.png", _photo(4))
    _write_stamp(tmp_path, "animals/fish/lobster.png", _photo(5))
    _write_stamp(tmp_path, "town/house.png", _photo(6))
    flat = np.zeros((64, 64, 4), np.uint8)
    flat[8:-8, 8:-8] = (0, 120, 0, 255)
    _write_stamp(tmp_path, "food/fruit/drawn_apple.png", flat)
    cutouts, skipped = stamp_cutouts(tmp_path)
    assert sorted((c.category, c.group) for c in cutouts) == [
        ("bird", "tuxpaint:bird/crow"),
        ("bird", "tuxpaint:bird/crow"),
        ("mammal", "tuxpaint:mammal/bear"),
    ]
    assert {c.source for c in cutouts} == {
        "tuxpaint:animals/birds/crow.png", "tuxpaint:animals/birds/crow2.png",
        "tuxpaint:animals/mammals/bears/bear.png",
    }  # fmt: skip
    assert cutouts[0].mask.shape == (48, 48) and cutouts[0].mask.all()
    assert skipped == {
        "drawing/toy folder": 1, "excluded by name": 1, "no demo class": 1, "not photo-like": 1,
    }  # fmt: skip


def test_fetch_stamps_without_debian_tools_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(StampsUnavailable, match="lacks dpkg-deb and apt-get.*does not fall back"):
        fetch_stamps(tmp_path / "cache")
    assert not stamps_dir(tmp_path / "cache").exists()


def test_fetch_stamps_refuses_a_package_with_the_wrong_checksum(tmp_path):
    deb = tmp_path / "debs" / deb_name()
    deb.parent.mkdir()
    deb.write_bytes(b"not the pinned package")
    if not any((Path(p) / "dpkg-deb").exists() for p in ("/usr/bin", "/bin")):
        pytest.skip("dpkg-deb is not installed; the missing-tools error is tested above")
    with pytest.raises(StampsUnavailable, match="expected 6db6c1bf"):
        fetch_stamps(tmp_path)
    assert deb.is_file() and not stamps_dir(tmp_path).exists()  # a file placed by hand is never deleted


@pytest.mark.slow
def test_real_cutouts_have_enough_unseen_val_objects_per_class():
    assert PHOTO_CACHE.is_dir(), f"{PHOTO_CACHE} is missing: run tools/setup_env.sh (make setup) first"
    assert stamps_dir(STAMP_CACHE).is_dir(), f"{STAMP_CACHE} is missing: run tools/setup_env.sh first"
    cutouts, skipped = load_cutouts(PHOTO_CACHE, stamps_dir(STAMP_CACHE))
    assert len(cutouts) >= 150 and skipped["not photo-like"] > 0
    splits = split_by_source(cutouts)  # raises for a class with fewer than 4 sources
    train, val = splits["train"], splits["val"]
    assert not {c.source for c in train} & {c.source for c in val}
    assert not {c.group for c in train} & {c.group for c in val}
    assert not {c.pixel_hash() for c in train} & {c.pixel_hash() for c in val}
    for category in CATEGORIES:
        assert len({c.group for c in train if c.category == category}) >= 2, category
        assert len({c.group for c in val if c.category == category}) >= 2, category
    sources = {c.source for c in cutouts}
    assert "imgaug:quokka.jpg" in sources and "skimage:coins" in sources
    assert not any(s.endswith("_mirror.png") for s in sources)


@pytest.mark.slow
def test_real_photo_corpus(tmp_path):
    assert PHOTO_CACHE.is_dir(), f"{PHOTO_CACHE} is missing: run tools/setup_env.sh (make setup) first"
    photos = write_photo_corpus(PHOTO_CACHE, tmp_path / "corpus", max_side=128)
    assert len(photos) >= 50
    assert max(Image.open(p).size[0] for p in photos) <= 128


def test_demo_fine_tuning_config_has_one_class_per_demo_category():
    import yaml

    config_file = REPO / "detectron2_configs" / "demo" / "mask_rcnn_R18_FPN_demo.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert config["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == len(CATEGORIES)
