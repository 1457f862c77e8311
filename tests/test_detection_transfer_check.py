"""Converted weights against the fine-tuning model of a bundled Detectron2 config."""

from transfer_testing import CONFIGS, TINY_R50, image_level_checkpoint

from soco.checkpoint import convert_checkpoint
from soco.checkpoint.verify import PART_MODEL_KEYS
from soco.detection import check_transfer_with_config


def test_check_with_config_builds_the_model_from_the_bundled_file():
    weights, _ = convert_checkpoint(image_level_checkpoint())
    check = check_transfer_with_config(
        weights, str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_mocov2_200ep.yaml"), TINY_R50
    )
    assert check.ok and "backbone.bottom_up.res5.2.conv3.weight" in check.loaded
    assert not any(PART_MODEL_KEYS["fpn"].search(k) for k in check.loaded), (
        "no FPN in an image-level checkpoint"
    )
