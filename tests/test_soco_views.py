"""SoCo view geometry: proposals map to the same pixels in every view; levels; correspondence; colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from soco.config import add_soco_config
from soco.data import VIEW_GENERATOR_REGISTRY
from soco.data.photometric import RandomPILGaussianBlur
from soco.data.soco import boxes as B
from soco.data.soco.cutout import cutout_in_boxes

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


def pair_names(sample: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    return [tuple(k[len("correspondence") :].split("_vs_")) for k in sample if k.startswith("correspondence")]


def view_of(box_set: str) -> int:
    return int(box_set.split("_")[0])


# --- the whole generators -------------------------------------------------------------------------------


@pytest.mark.parametrize("generator", ["SoCoC4Views", "SoCoFPNViews", "SoCoFPNStarViews"])
@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_proposals_show_the_same_content_in_every_view(generator, flip_prob):
    cfg = make_cfg(generator, flip_prob=flip_prob)
    k = cfg.SOCO.BOXES.NUM_PER_PAIR
    proposal_colours = np.array(COLOURS, dtype=np.float64)
    for seed in range(6):
        sample = generate(cfg, seed)
        views = {int(n[4:]): to_rgb255(v) for n, v in sample.items() if n.startswith("view")}
        colours = {}
        for name in {s for pair in pair_names(sample) for s in pair}:
            boxes = sample[f"boxes{name}"].numpy()
            assert boxes.shape == (k, 4)
            view = views[view_of(name)]
            colours[name] = [box_colour(view, box) for box in boxes]
            for box, colour in zip(boxes, colours[name], strict=True):
                assert 0 <= box[0] < box[2] <= view.shape[1] and 0 <= box[1] < box[3] <= view.shape[0]
                if colour is not None:
                    assert np.abs(proposal_colours - colour).max(axis=1).min() < 3, "box is not on a proposal"
                    outside_is_background(view, box)
        for a, b in pair_names(sample):
            matches = np.argwhere(sample[f"correspondence{a}_vs_{b}"].numpy() > 0)
            assert len(matches) >= k, "padding must give every box of the pair a partner"
            for slot_a, slot_b in matches:
                colour_a, colour_b = colours[a][slot_a % k], colours[b][slot_b % k]
                if colour_a is not None and colour_b is not None:
                    np.testing.assert_allclose(colour_a, colour_b, atol=3)


def test_fpn_views_shapes_levels_and_correspondence_structure():
    cfg = make_cfg("SoCoFPNViews", plain=False)
    cfg.SOCO.BOXES.JITTER_PROB = 1.0
    sample = generate(cfg, 3)
    assert sample["view1"].shape == (3, 64, 64) and sample["view3"].shape == (3, 32, 32)
    assert sorted(pair_names(sample)) == [("1_2", "2"), ("1_3", "3")]
    k, num_levels = 4, 4
    for a, b in pair_names(sample):
        corr = sample[f"correspondence{a}_vs_{b}"]
        assert corr.shape == (num_levels * k, num_levels * k) and corr.dtype == torch.float32
        levels_a, levels_b = sample[f"levels{a}"], sample[f"levels{b}"]
        for name, levels in ((a, levels_a), (b, levels_b)):
            boxes = sample[f"boxes{name}"].numpy()
            expected = B.assign_levels(boxes, cfg.SOCO.BOXES.LEVEL_THRESHOLDS)
            assert levels.tolist() == expected.tolist()
        rows, cols = torch.nonzero(corr, as_tuple=True)
        assert (rows // k == levels_a[rows % k]).all(), (
            "a match sits in a level slot the box is not assigned to"
        )
        assert (cols // k == levels_b[cols % k]).all()


def test_c4_views_have_one_level_and_k_by_k_correspondence():
    sample = generate(make_cfg("SoCoC4Views", plain=False, **{"SOCO.CUTOUT.ENABLED": True}), 0)
    assert sample["correspondence1_2_vs_2"].shape == (4, 4)
    assert sample["levels2"].tolist() == [0, 0, 0, 0]
    assert {k for k in sample if k.startswith("view")} == {"view1", "view2"}


def test_fpn_star_view4_is_view2_resized():
    sample = generate(make_cfg("SoCoFPNStarViews", flip_prob=0.0), 1)
    view2 = torch.nn.functional.interpolate(
        sample["view2"][None], size=(32, 32), mode="bilinear", antialias=True, align_corners=False
    )[0]
    assert (view2 - sample["view4"]).abs().mean() < 0.05
    torch.testing.assert_close(sample["boxes4"], sample["boxes2"] * 0.5)
    assert sorted(pair_names(sample)) == [("1_2", "2"), ("1_2", "4"), ("1_3", "3")]


def test_generators_are_deterministic_given_the_seeds():
    cfg = make_cfg("SoCoFPNViews", plain=False, **{"SOCO.CUTOUT.ENABLED": True})
    first, second = generate(cfg, 7), generate(cfg, 7)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    assert not torch.equal(first["view2"], generate(cfg, 8)["view2"])


def test_image_without_proposals_uses_the_whole_image():
    cfg = make_cfg("SoCoFPNViews", flip_prob=0.0)
    np.random.seed(0)
    image, _ = make_image()
    sample = VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(cfg)(image, np.zeros((0, 4), dtype=np.int64))
    torch.testing.assert_close(sample["boxes1_2"], torch.tensor([[0.0, 0.0, 64.0, 64.0]] * 4))
    assert sample["correspondence1_2_vs_2"].sum() == 16  # the 4 copies of the one proposal match each other


def test_view_larger_than_the_last_level_threshold_is_rejected():
    with pytest.raises(ValueError, match="LEVEL_THRESHOLDS"):
        VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(
            make_cfg("SoCoFPNViews", **{"SOCO.VIEWS.SIZES": [96, 64, 32]})
        )
    with pytest.raises(ValueError, match="SOCO.VIEWS.SIZES"):
        VIEW_GENERATOR_REGISTRY.get("SoCoFPNViews")(
            make_cfg("SoCoFPNViews", **{"SOCO.VIEWS.SIZES": [64, 64]})
        )


# --- box geometry -----------------------------------------------------------------------------------------


def test_proposals_to_boxes_uses_the_inclusive_extent():
    box_set = B.proposals_to_boxes(np.array([[3, 4, 10, 20]]), 50, 40)
    np.testing.assert_array_equal(box_set.boxes, [[3, 4, 14, 25]])
    assert box_set.ids.tolist() == [1]
    whole = B.proposals_to_boxes(np.zeros((0, 4)), 50, 40)
    np.testing.assert_array_equal(whole.boxes, [[0, 0, 50, 40]])
    with pytest.raises(ValueError, match="shape"):
        B.proposals_to_boxes(np.zeros((2, 5)), 50, 40)


@pytest.mark.parametrize(
    "side, level",
    [(47, 0), (48, 0), (49, 1), (96, 1), (97, 2), (192, 2), (193, 3), (224, 3)],
)
def test_level_assignment_at_the_thresholds(side, level):
    boxes = np.array([[10.0, 20.0, 10.0 + side, 20.0 + side]])
    assert B.assign_levels(boxes, [48, 96, 192, 224]).tolist() == [level]


def test_level_assignment_uses_sqrt_area_and_rejects_oversized_boxes():
    # 32 x 72: sqrt = 48 -> P2 although the long side is 72
    assert B.assign_levels(np.array([[0.0, 0.0, 32.0, 72.0]]), [48, 96, 192, 224]).tolist() == [0]
    with pytest.raises(ValueError, match="exceeds"):
        B.assign_levels(np.array([[0.0, 0.0, 225.0, 225.0]]), [48, 96, 192, 224])


def test_a_box_filling_the_view_is_assigned_despite_float_noise():
    window = B.CropWindow(left=0.0, top=0.0, width=187.0, height=187.0)  # 96 / 187 * 187 > 96 in floats
    whole = B.window_to_view(np.array([[0.0, 0.0, 187.0, 187.0]]), window, 96)
    assert B.assign_levels(whole, [20, 40, 80, 96]).tolist() == [3]
    assert B.assign_levels(np.array([[0.0, 0.0, 96.0 + 1e-12, 96.0]]), [20, 40, 80, 96]).tolist() == [3]


def test_correspondence_matrix_is_level_major_and_counts_duplicates():
    ids_a, levels_a = np.array([5, 7, 5, 9]), np.array([0, 3, 1, 2])
    ids_b, levels_b = np.array([5, 5, 8, 7]), np.array([2, 2, 0, 1])
    slots_a = B.level_slot_ids(ids_a, levels_a, 4, -1)
    slots_b = B.level_slot_ids(ids_b, levels_b, 4, -2)
    assert slots_a.tolist() == [5, -1, -1, -1, -1, -1, 5, -1, -1, -1, -1, 9, -1, 7, -1, -1]
    corr = B.correspondence_matrix(slots_a, slots_b)
    expected = np.zeros((16, 16), dtype=np.float32)
    for i in (0, 6):  # box 0 (P2) and box 2 (P3) of a hold id 5
        expected[i, [8, 9]] = 1  # boxes 0 and 1 of b hold id 5 on P4
    expected[13, 7] = 1  # id 7: box 1 of a on P5, box 3 of b on P3
    np.testing.assert_array_equal(corr, expected)


def test_selection_retries_with_a_halving_threshold():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 12.0, 12.0], [50.0, 50.0, 60.0, 60.0]])
    anchor = B.CropWindow(0, 0, 100, 100)
    near, far = B.CropWindow(0, 0, 20, 20), B.CropWindow(70, 70, 30, 30)
    # K = 4 needs 2 common boxes on the first try, 1 afterwards: [far] fails, [(50, 50) window] succeeds
    draws = iter([[far], [B.CropWindow(40, 40, 30, 30)], [near]])
    crops, selections = B.select_with_retries(
        boxes, anchor, lambda: next(draws), 4, 5, np.random.RandomState(0)
    )
    assert crops == [B.CropWindow(40, 40, 30, 30)] and selections[0].tolist() == [2]
    # every try fails: the last draw is kept with its (empty) selection
    draws = iter([[far]] * 3)
    crops, selections = B.select_with_retries(
        boxes, anchor, lambda: next(draws), 4, 3, np.random.RandomState(0)
    )
    assert crops == [far] and len(selections[0]) == 0
    # more candidates than K: K distinct ones
    many = np.array([[i, 0.0, i + 5.0, 5.0] for i in range(10)])
    _, (chosen,) = B.select_with_retries(many, anchor, lambda: [anchor], 4, 1, np.random.RandomState(0))
    assert len(set(chosen.tolist())) == 4


def test_clip_drops_outside_boxes_and_falls_back_to_the_whole_window():
    window = B.CropWindow(10, 20, 30, 40)
    box_set = B.BoxSet(np.array([[0.0, 0.0, 15.0, 30.0], [50.0, 0.0, 60.0, 10.0]]), np.array([3, 4]))
    clipped = B.clip_to_window(box_set, window)
    np.testing.assert_array_equal(clipped.boxes, [[0, 0, 5, 10]])
    assert clipped.ids.tolist() == [3]
    fallback = B.clip_to_window(B.BoxSet(box_set.boxes[1:], box_set.ids[1:]), window)
    np.testing.assert_array_equal(fallback.boxes, [[0, 0, 30, 40]])
    assert fallback.ids.tolist() == [B.FALLBACK_ID]


def test_padding_draws_only_common_ids():
    a = B.BoxSet(np.arange(12.0).reshape(3, 4), np.array([1, 2, 3]))
    b = B.BoxSet(np.arange(8.0).reshape(2, 4), np.array([2, 5]))
    padded_a, padded_b = B.pad_with_common(a, b, 6, np.random.RandomState(0))
    assert padded_a.ids[:3].tolist() == [1, 2, 3] and set(padded_a.ids[3:].tolist()) == {2}
    assert padded_b.ids[:2].tolist() == [2, 5] and set(padded_b.ids[2:].tolist()) == {2}
    np.testing.assert_array_equal(padded_a.boxes[3:], np.tile(a.boxes[1], (3, 1)))
    # no common id: each set repeats its own boxes
    lone_a, _ = B.pad_with_common(a, B.BoxSet(b.boxes[1:], b.ids[1:]), 4, np.random.RandomState(0))
    assert len(lone_a.ids) == 4 and set(lone_a.ids.tolist()) <= {1, 2, 3}


def test_flip_and_resize_to_view():
    boxes = np.array([[2.0, 3.0, 10.0, 7.0]])
    np.testing.assert_array_equal(B.flip_boxes(boxes, 20), [[10, 3, 18, 7]])
    np.testing.assert_array_equal(B.flip_boxes(B.flip_boxes(boxes, 20), 20), boxes)
    np.testing.assert_array_equal(B.window_to_view(boxes, B.CropWindow(5, 5, 40, 20), 80), [[4, 12, 20, 28]])


def test_jitter_changes_boxes_within_the_ratio():
    boxes = np.tile([[100.0, 100.0, 200.0, 150.0]], (200, 1))
    np.testing.assert_array_equal(B.jitter_boxes(boxes, 0.0, 0.1, np.random.RandomState(0)), boxes)
    jittered = B.jitter_boxes(boxes, 0.5, 0.1, np.random.RandomState(0))
    changed = (jittered != boxes).any(axis=1)
    assert 60 < changed.sum() < 140
    assert np.abs(jittered[:, 0] - 100).max() <= 10 and np.abs(jittered[:, 1] - 100).max() <= 5
    widths = jittered[:, 2] - jittered[:, 0]
    assert widths.min() >= 90 and widths.max() <= 110


# --- photometric ---------------------------------------------------------------------------------------


def test_cutout_stays_inside_the_box_and_accepts_float_coordinates():
    image = torch.ones(3, 64, 64)
    box = np.array([[10.3, 20.7, 40.2, 50.9]], dtype=np.float32)
    cutout_in_boxes(image, box, prob=1.0, area_range=(0.2, 0.2), rng=np.random.RandomState(0))
    zero = image[0] == 0
    rows, cols = torch.nonzero(zero, as_tuple=True)
    assert zero.any()
    # the square is centred inside the box; it may stick out by at most half its side
    half = np.sqrt(0.2 * 30 * 30) / 2 + 1
    assert cols.min() >= 10 - half and cols.max() <= 40 + half and rows.min() >= 20 - half
    untouched = torch.ones(3, 64, 64)
    cutout_in_boxes(untouched, box, prob=0.0, area_range=(0.2, 0.2), rng=np.random.RandomState(0))
    assert (untouched == 1).all()


def test_pil_gaussian_blur_smooths():
    pixels = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    blurred = np.asarray(RandomPILGaussianBlur((1.0, 2.0))(image), dtype=np.float64)
    assert blurred.std() < 0.5 * pixels.std()
