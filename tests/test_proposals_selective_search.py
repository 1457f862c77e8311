import warnings

import numpy as np
import pytest
from skimage import data, transform

from soco_proposals.backends import PROPOSAL_BACKENDS, get_backend
from soco_proposals.benchmark import pairwise_iou_xywh
from soco_proposals.selective_search import (
    _COLOUR_LUT,
    _TEXTURE_LUT,
    Regions,
    hierarchical_grouping,
    lbp_codes,
    neighbour_pairs,
    selective_search,
)

selectivesearch = pytest.importorskip("selectivesearch.selectivesearch")


def _soco_texture_hist(pixels):
    """SoCo's one change to the package: texture histogram range (0, 255) instead of (0, 1)."""
    hist = np.concatenate([np.histogram(pixels[:, c], 10, (0.0, 255.0))[0] for c in range(3)])
    return hist / len(pixels)


@pytest.fixture
def soco_oracle(monkeypatch):
    """``selectivesearch.selective_search`` 0.4 patched as in SoCo; returns (M, 4) xywh."""
    monkeypatch.setattr(selectivesearch, "_calc_texture_hist", _soco_texture_hist)

    def run(image, scale=300, sigma=0.9, min_size=100):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LBP on float images
            _, regions = selectivesearch.selective_search(image, scale=scale, sigma=sigma, min_size=min_size)
        return np.array([r["rect"] for r in regions], dtype=np.int64).reshape(-1, 4)

    return run


def _photo(name, factor):
    image = getattr(data, name)()
    if factor == 1:
        return image
    scaled = transform.rescale(image, factor, channel_axis=2, anti_aliasing=True)
    return np.round(scaled * 255).astype(np.uint8)


def test_equal_to_patched_package_on_photos(soco_oracle):
    photos = [("chelsea", 1), ("astronaut", 0.5), ("coffee", 0.5), ("rocket", 0.4)]
    differing, matched, total = [], 0, 0
    for name, factor in photos:
        image = _photo(name, factor)
        oracle, ours = soco_oracle(image), selective_search(image)
        if oracle.shape != ours.shape or not np.array_equal(oracle, ours):
            differing.append(name)
        total += len(oracle)
        matched += int((pairwise_iou_xywh(oracle, ours).max(axis=1) >= 0.9).sum()) if len(ours) else 0
    assert total > 200
    assert matched >= 0.99 * total, (
        f"images differing from the package: {differing}; {matched}/{total} matched"
    )
    assert not differing, f"{len(differing)} of {len(photos)} images differ from the package: {differing}"


def test_equal_to_patched_package_on_hard_synthetic_images(soco_oracle):
    """Noise, flat and blocky images with many equal similarities: the tie-breaking must match too."""
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (23, 31, 3)),
        np.full((17, 9, 3), 77),
        np.repeat(np.repeat(rng.integers(0, 3, (6, 7, 3)) * 100, 8, axis=0), 8, axis=1),
        (np.add.outer(np.arange(40), np.arange(30))[:, :, None] * [1, 2, 3]) % 256,
        rng.integers(0, 256, (1, 12, 3)),
    ]
    for image in images:
        image = image.astype(np.uint8)
        for params in [(300, 0.9, 100), (1.0, 0.8, 5), (50, 0.5, 10)]:
            np.testing.assert_array_equal(selective_search(image, *params), soco_oracle(image, *params))


def test_histogram_luts_match_numpy_histogram():
    for lut, bins in ((_COLOUR_LUT, 25), (_TEXTURE_LUT, 10)):
        for value in range(256):
            counts = np.histogram([float(value)], bins, (0.0, 255.0))[0]
            assert lut[value] == np.argmax(counts), value


def test_lbp_codes_match_scikit_image():
    from skimage.feature import local_binary_pattern

    rng = np.random.default_rng(0)
    channels = [data.astronaut()[::2, ::2, 0], np.full((7, 9), 77, np.uint8), np.zeros((1, 1), np.uint8)]
    channels += [rng.integers(0, 256, tuple(rng.integers(1, 40, 2))).astype(np.uint8) for _ in range(20)]
    channels += [(rng.integers(0, 3, (30, 30)) * 127).astype(np.uint8) for _ in range(10)]
    for channel in channels:
        np.testing.assert_array_equal(lbp_codes(channel), local_binary_pattern(channel, 8, 1.0))


def test_neighbour_rule_is_one_sided_and_strict():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0
            [5, 5, 20, 20],  # 1: corner (5, 5) strictly inside 0
            [10, 0, 30, 10],  # 2: touches 0 only on its border -> not a neighbour of 0
            [12, 12, 14, 14],  # 3: inside 1 entirely
            [-5, -5, 40, 40],  # 4: contains 0, but no corner of 4 is inside 0 (a < b only checks b in a)
        ]
    )
    pairs = neighbour_pairs(boxes).tolist()
    assert pairs == [[0, 1], [1, 2], [1, 3]]


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="RGB uint8"):
        selective_search(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        selective_search(np.zeros((10, 10, 3), dtype=np.float32))


def test_backend_registry_and_opencv_box_convention():
    assert {"reference", "opencv-fast", "opencv-quality"} <= set(PROPOSAL_BACKENDS)
    with pytest.raises(KeyError, match="available"):
        get_backend("opencv-turbo")
    image = _photo("chelsea", 0.25)  # (75, 113)
    height, width = image.shape[:2]
    boxes = get_backend("opencv-fast")(image)
    assert boxes.shape[1] == 4 and len(boxes) > 10
    x2, y2 = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    assert boxes.min() >= 0 and x2.max() == width - 1 and y2.max() == height - 1
    np.testing.assert_array_equal(get_backend("reference")(image), selective_search(image))


def _tied_regions(rng, n):
    """Hand-made initial regions drawn from few prototypes, so that many similarities are exactly equal."""
    corners = rng.integers(0, 12, (4, 2)) * 4
    boxes = np.stack([np.concatenate([c, c + rng.integers(8, 24, 2)]) for c in corners])[
        rng.integers(0, 4, n)
    ]
    boxes += rng.integers(0, 2, (n, 1)) * 4  # shift some boxes to mix overlaps
    colour = rng.dirichlet(np.ones(25), 2)[rng.integers(0, 2, n)]
    texture = np.concatenate([rng.dirichlet(np.ones(10), (2, 3)).reshape(2, 30)])[rng.integers(0, 2, n)]
    sizes = rng.choice([40, 60], n)
    return Regions(boxes.astype(np.int64), sizes.astype(np.int64), colour, texture)


def test_grouping_tie_breaking_matches_package_loop(monkeypatch):
    """Run the package's own merge loop on hand-made regions full of ties and compare the merge order."""
    rng = np.random.default_rng(1)
    for _ in range(40):
        regions = _tied_regions(rng, int(rng.integers(5, 30)))
        package_regions = {
            float(label): {
                "min_x": int(b[0]),
                "min_y": int(b[1]),
                "max_x": int(b[2]),
                "max_y": int(b[3]),
                "labels": [float(label)],
                "size": int(s),
                "hist_c": np.concatenate([np.eye(25)[0], np.eye(25)[0], c]),
                "hist_t": t,
            }
            for label, (b, s, c, t) in enumerate(
                zip(regions.boxes, regions.sizes, regions.colour, regions.texture, strict=True)
            )
        }
        monkeypatch.setattr(selectivesearch, "_generate_segments", lambda im, *a: np.zeros((64, 64, 4)))
        monkeypatch.setattr(selectivesearch, "_extract_regions", lambda img, r=package_regions: r)
        _, expected = selectivesearch.selective_search(np.zeros((64, 64, 3)))
        expected = np.array([r["rect"] for r in expected])
        corners = hierarchical_grouping(regions, 64 * 64)
        np.testing.assert_array_equal(
            np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1), expected
        )
