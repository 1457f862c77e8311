"""The colour pipeline and the normalisation equal torchvision's compositions bit for bit, draws included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from soco.data.image_views import MOCO_V2_COLOR, SWAV_COLOR
from soco.data.photometric import ColorRecipe, Normalizer, RandomPILGaussianBlur

SOCO_V1 = ColorRecipe((0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 1.0, (0.1, 2.0), 0.0, 128)
SOCO_OTHERS = ColorRecipe((0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 0.1, (0.1, 2.0), 0.2, 128)
EVERYTHING = ColorRecipe((0.6, 0.6, 0.6, 0.3), 1.0, 0.5, 0.5, (0.5, 1.5), 0.5, 100)


def torchvision_pipeline(recipe: ColorRecipe) -> T.Compose:
    """The composition ColorRecipe described before ColorPipeline existed."""
    return T.Compose(
        [
            T.RandomApply([T.ColorJitter(*recipe.jitter)], p=recipe.jitter_prob),
            T.RandomGrayscale(p=recipe.grayscale_prob),
            T.RandomApply([RandomPILGaussianBlur(recipe.blur_sigma)], p=recipe.blur_prob),
            T.RandomSolarize(threshold=recipe.solarize_threshold, p=recipe.solarize_prob),
        ]
    )


def photo_like_views() -> list[Image.Image]:
    """Smooth colour gradients plus noise at the two SoCo view sizes (hue, contrast and blur all matter)."""
    rng = np.random.default_rng(0)
    views = []
    for size in (64, 112, 40):
        y, x = np.mgrid[0:size, 0:size] / size
        base = np.stack([np.sin(6 * x) * 100 + 128, y * 255, (x + y) * 120], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        views.append(Image.fromarray(pixels))
    return views


@pytest.mark.parametrize("recipe", [SOCO_V1, SOCO_OTHERS, MOCO_V2_COLOR, SWAV_COLOR, EVERYTHING])
def test_color_pipeline_equals_the_torchvision_composition(recipe):
    reference, pipeline = torchvision_pipeline(recipe), recipe.build()
    for seed, view in enumerate(photo_like_views() * 8):
        torch.manual_seed(seed)
        expected, expected_next = np.asarray(reference(view)), torch.rand(1)
        torch.manual_seed(seed)
        actual, actual_next = np.asarray(pipeline(view)), torch.rand(1)
        np.testing.assert_array_equal(actual, expected, err_msg=f"seed {seed}")
        assert torch.equal(actual_next, expected_next), "the pipeline must draw the same random numbers"


def test_normalizer_equals_to_tensor_and_normalize():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    reference = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    for view in photo_like_views():
        tensor = Normalizer(mean, std)(view)
        assert tensor.is_contiguous() and tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, reference(view), rtol=0, atol=0)


@pytest.mark.parametrize("recipe", [SOCO_V1, EVERYTHING])
def test_the_fast_approximation_draws_the_same_and_stays_within_a_few_levels(recipe):
    exact, fast = recipe.build(), recipe.build(fast=True)
    differences = []
    for seed, view in enumerate(photo_like_views() * 4):
        torch.manual_seed(seed)
        expected, expected_next = np.asarray(exact(view), dtype=np.int64), torch.rand(1)
        torch.manual_seed(seed)
        actual, actual_next = np.asarray(fast(view), dtype=np.int64), torch.rand(1)
        assert torch.equal(actual_next, expected_next), "the approximation must draw the same parameters"
        differences.append(np.abs(actual - expected))
    differences = np.concatenate([d.ravel() for d in differences])
    assert differences.mean() < 1.0 and np.percentile(differences, 99) <= 6, (
        differences.mean(),
        differences.max(),
    )
    assert differences.max() > 0, "the fast path is a different implementation"


def test_the_fast_approximation_is_off_unless_asked():
    from detectron2.config import get_cfg

    from soco.config import add_soco_config

    cfg = get_cfg()
    add_soco_config(cfg)
    assert cfg.PRETRAIN.DATA.FAST_PHOTOMETRIC is False
    assert SOCO_V1.build().fast is False


def test_pil_gaussian_blur_smooths():
    pixels = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    blurred = np.asarray(RandomPILGaussianBlur((1.0, 2.0))(image), dtype=np.float64)
    assert blurred.std() < 0.5 * pixels.std()
