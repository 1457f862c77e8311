import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from soco.config import add_soco_config
from soco.data.batch_keys import TWO_VIEWS_KEY, multi_crop_key
from soco.data.build import VIEW_GENERATOR_REGISTRY, seed_sample_rngs
from soco.data.image_views import MoCoV2Views, MultiCropViews


def _cfg(**overrides):
    cfg = get_cfg()
    add_soco_config(cfg)
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def _image(width: int = 90, height: int = 70) -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (250, 20, 20)  # a red half so that crops and colour changes show up
    return Image.fromarray(pixels)


def test_generators_are_registered():
    assert VIEW_GENERATOR_REGISTRY.get("MoCoV2Views") is MoCoV2Views
    assert VIEW_GENERATOR_REGISTRY.get("MultiCropViews") is MultiCropViews


def test_moco_v2_views_are_two_independent_normalised_crops():
    generator = MoCoV2Views(_cfg(**{"MOCO.VIEWS.SIZE": 48}))
    seed_sample_rngs(0, 0)
    out = generator(_image(), None)
    assert set(out) == {TWO_VIEWS_KEY}
    views = out[TWO_VIEWS_KEY]
    assert views.shape == (2, 3, 48, 48) and views.dtype == torch.float32
    assert not torch.equal(views[0], views[1])
    # normalised: [0, 1] pixels minus the ImageNet mean over the std stay within about [-2.2, 2.7]
    assert views.min() >= -2.2 and views.max() <= 2.7 and views.min() < -0.5


def test_views_are_reproducible_from_the_sample_seed():
    generator = MoCoV2Views(_cfg(**{"MOCO.VIEWS.SIZE": 32}))
    seed_sample_rngs(3, 17)
    first = generator(_image(), None)[TWO_VIEWS_KEY]
    seed_sample_rngs(3, 17)
    again = generator(_image(), None)[TWO_VIEWS_KEY]
    seed_sample_rngs(3, 18)
    other = generator(_image(), None)[TWO_VIEWS_KEY]
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


def test_multi_crop_views_have_one_entry_per_resolution():
    cfg = _cfg(
        **{
            "SWAV.VIEWS.SIZES": "[48, 24]",
            "SWAV.VIEWS.NUM_CROPS": "[2, 3]",
            "SWAV.VIEWS.MIN_SCALES": "[0.3, 0.05]",
            "SWAV.VIEWS.MAX_SCALES": "[1.0, 0.3]",
        }
    )
    seed_sample_rngs(0, 0)
    out = MultiCropViews(cfg)(_image(), None)
    assert set(out) == {multi_crop_key(0), multi_crop_key(1)}
    assert out[multi_crop_key(0)].shape == (2, 3, 48, 48)
    assert out[multi_crop_key(1)].shape == (3, 3, 24, 24)
    small = out[multi_crop_key(1)]
    assert not torch.equal(small[0], small[1]) and not torch.equal(small[1], small[2])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SWAV.VIEWS.NUM_CROPS": "[2]"}, "same non-zero length"),
        ({"SWAV.VIEWS.MIN_SCALES": "[0.5, 0.05]", "SWAV.VIEWS.MAX_SCALES": "[0.4, 0.14]"}, "group 0"),
        ({"SWAV.VIEWS.SIZES": "[224, 0]"}, "must be > 0"),
    ],
)
def test_bad_multi_crop_settings_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        MultiCropViews(_cfg(**overrides))


def test_bad_moco_crop_scale_names_the_key():
    with pytest.raises(ValueError, match="MOCO.VIEWS.CROP_SCALE"):
        MoCoV2Views(_cfg(**{"MOCO.VIEWS.CROP_SCALE": "(0.0, 1.0)"}))
