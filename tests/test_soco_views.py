"""SoCo view generators (``soco.data.soco.views``): proposals map to the same pixels in every view; levels;
correspondence; batch keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from soco.config import add_soco_config
from soco.data import VIEW_GENERATOR_REGISTRY
from soco.data import batch_keys as keys
from soco.data.soco import boxes as B

BACKGROUND = (128, 128, 128)
# Four separated rectangles (x, y, w, h with w = max_x - min_x) with unique colours; the third covers the
# image centre, which every crop of at least half the image contains, so every pair has a common proposal.
RECTS = [(4, 4, 27, 23), (92, 6, 31, 25), (50, 36, 29, 25), (10, 66, 35, 25)]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def make_image() -> tuple[Image.Image, np.ndarray]:
    pixels = np.zeros((96, 128, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    for (x, y, w, h), colour in zip(RECTS, COLOURS, strict=True):
        pixels[y : y + h + 1, x : x + w + 1] = colour
    return Image.fromarray(pixels), np.array(RECTS, dtype=np.int64)


def make_cfg(generator: str, flip_prob: float = 0.5, plain: bool = True, **overrides):
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.PRETRAIN.DATA.VIEW_GENERATOR = generator
    cfg.SOCO.VIEWS.SIZES = {"SoCoC4Views": [64, 64], "SoCoFPNViews": [64, 64, 32]}.get(
        generator, [64, 64, 48, 32]
    )
    cfg.SOCO.BOXES.LEVEL_THRESHOLDS = [16, 32, 48, 64]
    cfg.SOCO.VIEWS.FLIP_PROB = flip_prob
    if plain:  # no photometric change, so pixels can be compared with the source image
        cfg.SOCO.VIEWS.COLOR_JITTER_PROB = 0.0
        cfg.SOCO.VIEWS.GRAYSCALE_PROB = 0.0
        cfg.SOCO.VIEWS.BLUR_PROB = (0.0, 0.0)
        cfg.SOCO.VIEWS.SOLARIZE_PROB = (0.0, 0.0)
        cfg.SOCO.BOXES.JITTER_PROB = 0.0
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return cfg


def generate(cfg, seed: int) -> dict[str, torch.Tensor]:
    np.random.seed(seed)
    torch.manual_seed(seed)
    image, proposals = make_image()
    return VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)(cfg)(image, proposals)


def to_rgb255(view: torch.Tensor) -> np.ndarray:
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((view * std + mean) * 255.0).permute(1, 2, 0).numpy()


def box_colour(view: np.ndarray, box: np.ndarray, margin: int = 2) -> np.ndarray | None:
    """The uniform colour inside a box shrunk by ``margin`` px (resampling blurs edges); None if too small."""
    x1, y1, x2, y2 = box
    top, bottom = int(np.ceil(y1)) + margin, int(np.floor(y2)) - margin
    left, right = int(np.ceil(x1)) + margin, int(np.floor(x2)) - margin
    if bottom <= top or right <= left:
        return None
    inside = view[top:bottom, left:right]
    colour = np.median(inside.reshape(-1, 3), axis=0)
    assert np.abs(inside - colour).max() < 3, "a box interior is not one proposal's colour"
    return colour


def outside_is_background(view: np.ndarray, box: np.ndarray, gap: int = 2) -> None:
    """Pixels ``gap`` px outside each box side that lies inside the view are background (the box is tight)."""
    height, width, _ = view.shape
    x1, y1, x2, y2 = box
    rows = slice(int(np.ceil(y1)) + gap, max(int(np.floor(y2)) - gap, int(np.ceil(y1)) + gap + 1))
    cols = slice(int(np.ceil(x1)) + gap, max(int(np.floor(x2)) - gap, int(np.ceil(x1)) + gap + 1))
    samples = []
    if x1 - gap - 1 >= 0:
        samples.append(view[rows, int(np.floor(x1)) - gap - 1])
    if x2 + gap + 1 <= width:
        samples.append(view[rows, int(np.ceil(x2)) + gap])
    if y1 - gap - 1 >= 0:
        samples.append(view[int(np.floor(y1)) - gap - 1, cols])
    if y2 + gap + 1 <= height:
        samples.append(view[int(np.ceil(y2)) + gap, cols])
    for line in samples:
        np.testing.assert_allclose(line, np.broadcast_to(BACKGROUND, line.shape), atol=3)


# --- the whole generators -------------------------------------------------------------------------------


@pytest.mark.parametrize("generator", ["SoCoC4Views", "SoCoFPNViews", "SoCoFPNStarViews"])
@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_proposals_show_the_same_content_in_every_view(generator, flip_prob):
    cfg = make_cfg(generator, flip_prob=flip_prob)
    k = cfg.SOCO.BOXES.NUM_PER_PAIR
    proposal_colours = np.array(COLOURS, dtype=np.float64)
    for seed in range(6):
        sample = generate(cfg, seed)
        views = {v: to_rgb255(sample[keys.view_key(v)]) for v in keys.views(sample)}
        colours = {}
        for name in keys.box_sets(keys.pairs(sample)):
            boxes = sample[keys.boxes_key(name)].numpy()
            assert boxes.shape == (k, 4)
            view = views[keys.view_of(name)]
            colours[name] = [box_colour(view, box) for box in boxes]
            for box, colour in zip(boxes, colours[name], strict=True):
                assert 0 <= box[0] < box[2] <= view.shape[1] and 0 <= box[1] < box[3] <= view.shape[0]
                if colour is not None:
                    assert np.abs(proposal_colours - colour).max(axis=1).min() < 3, "box is not on a proposal"
                    outside_is_background(view, box)
        for a, b in keys.pairs(sample):
            matches = np.argwhere(sample[keys.correspondence_key(a, b)].numpy() > 0)
            assert len(matches) >= k, "padding must give every box of the pair a partner"
            for slot_a, slot_b in matches:
                colour_a, colour_b = colours[a][slot_a % k], colours[b][slot_b % k]
                if colour_a is not None and colour_b is not None:
                    np.testing.assert_allclose(colour_a, colour_b, atol=3)


def test_fpn_views_shapes_levels_and_correspondence_structure():
    cfg = make_cfg("SoCoFPNViews", plain=False)
    cfg.SOCO.BOXES.JITTER_PROB = 1.0
    sample = generate(cfg, 3)
    assert sample[keys.view_key(1)].shape == (3, 64, 64) and sample[keys.view_key(3)].shape == (3, 32, 32)
    assert keys.pairs(sample) == [("1_2", "2"), ("1_3", "3")]
    k, num_levels = 4, 4
    for a, b in keys.pairs(sample):
        corr = sample[keys.correspondence_key(a, b)]
        assert corr.shape == (num_levels * k, num_levels * k) and corr.dtype == torch.float32
        levels_a, levels_b = sample[keys.levels_key(a)], sample[keys.levels_key(b)]
        for name, levels in ((a, levels_a), (b, levels_b)):
            boxes = sample[keys.boxes_key(name)].numpy()
            expected = B.assign_levels(boxes, cfg.SOCO.BOXES.LEVEL_THRESHOLDS)
            assert levels.tolist() == expected.tolist()
        rows, cols = torch.nonzero(corr, as_tuple=True)
        assert (rows // k == levels_a[rows % k]).all(), (
            "a match sits in a level slot the box is not assigned to"
        )
        assert (cols // k == levels_b[cols % k]).all()


def test_c4_views_have_one_level_and_k_by_k_correspondence():
    sample = generate(make_cfg("SoCoC4Views", plain=False, **{"SOCO.CUTOUT.ENABLED": True}), 0)
    assert sample[keys.correspondence_key("1_2", "2")].shape == (4, 4)
    assert sample[keys.levels_key("2")].tolist() == [0, 0, 0, 0]
    assert keys.views(sample) == [1, 2]


def test_fpn_star_view4_is_view2_resized():
    sample = generate(make_cfg("SoCoFPNStarViews", flip_prob=0.0), 1)
    view2 = torch.nn.functional.interpolate(
        sample[keys.view_key(2)][None], size=(32, 32), mode="bilinear", antialias=True, align_corners=False
    )[0]
    assert (view2 - sample[keys.view_key(4)]).abs().mean() < 0.05
    torch.testing.assert_close(sample[keys.boxes_key("4")], sample[keys.boxes_key("2")] * 0.5)
    assert keys.pairs(sample) == [("1_2", "2"), ("1_2", "4"), ("1_3", "3")]


def test_generators_are_deterministic_given_the_seeds():
    cfg = make_cfg("SoCoFPNViews", plain=False, **{"SOCO.CUTOUT.ENABLED": True})
    first, second = generate(cfg, 7), generate(cfg, 7)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    assert not torch.equal(first[keys.view_key(2)], generate(cfg, 8)[keys.view_key(2)])


def test_image_without_proposals_uses_the_whole_image():
    cfg = make_cfg("SoCoFPNViews", flip_prob=0.0)
    np.random.seed(0)
    image, _ = make_image()
    sample = VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(cfg)(image, np.zeros((0, 4), dtype=np.int64))
    torch.testing.assert_close(sample[keys.boxes_key("1_2")], torch.tensor([[0.0, 0.0, 64.0, 64.0]] * 4))
    # the 4 copies of the one proposal match each other
    assert sample[keys.correspondence_key("1_2", "2")].sum() == 16


def test_view_larger_than_the_last_level_threshold_is_rejected():
    with pytest.raises(ValueError, match="LEVEL_THRESHOLDS"):
        VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(
            make_cfg("SoCoFPNViews", **{"SOCO.VIEWS.SIZES": [96, 64, 32]})
        )
    with pytest.raises(ValueError, match="SOCO.VIEWS.SIZES"):
        VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(
            make_cfg("SoCoFPNViews", **{"SOCO.VIEWS.SIZES": [64, 64]})
        )


@pytest.mark.parametrize(
    "generator, pairs",
    [
        ("SoCoC4Views", [("1_2", "2")]),
        ("SoCoFPNViews", [("1_2", "2"), ("1_3", "3")]),
        ("SoCoFPNStarViews", [("1_2", "2"), ("1_2", "4"), ("1_3", "3")]),
    ],
)
def test_generators_write_exactly_the_batch_keys_of_their_pairs(generator, pairs):
    sample = generate(make_cfg(generator), 0)
    names = keys.box_sets(pairs)
    num_views = {"SoCoC4Views": 2, "SoCoFPNViews": 3}.get(generator, 4)
    expected = {keys.view_key(v) for v in range(1, num_views + 1)}
    expected |= {keys.boxes_key(name) for name in names} | {keys.levels_key(name) for name in names}
    expected |= {keys.correspondence_key(a, b) for a, b in pairs}
    assert set(sample) == expected
    assert keys.pairs(sample) == pairs and keys.views(sample) == list(range(1, num_views + 1))
