"""Matching converted weights onto a fine-tuning model, as DetectionCheckpointer does."""

from transfer_testing import CONFIGS, TINY_R50, build_transfer_model, image_level_checkpoint

from soco.checkpoint import check_transfer, check_transfer_with_config, convert_checkpoint
from soco.checkpoint.verify import PART_MODEL_KEYS


def test_tiny_weights_against_a_full_size_model_report_shape_mismatches():
    weights, _ = convert_checkpoint(image_level_checkpoint())
    check = check_transfer(
        build_transfer_model("coco/mask_rcnn_R_50_C4_1x_mocov2_200ep.yaml").state_dict(), weights
    )
    assert not check.ok
    assert ("stem.conv1.weight", (16, 3, 7, 7), (64, 3, 7, 7)) in check.mismatched
    assert "SHAPE MISMATCH stem.conv1.weight" in check.summary()


def test_missing_stage_is_reported_and_extra_norm_is_not():
    weights, _ = convert_checkpoint(image_level_checkpoint())
    no_res5 = {k: v for k, v in weights.items() if not k.startswith("res5.")}
    state = build_transfer_model("coco/mask_rcnn_R_50_C4_1x_mocov2_200ep.yaml", TINY_R50).state_dict()
    check = check_transfer(state, no_res5)
    assert "roi_heads.res5.0.conv1.weight" in check.missing
    assert not any(".res5.norm." in key for key in check.missing)
    assert check_transfer(state, weights).ok


def test_check_with_config_builds_the_model_from_the_bundled_file():
    weights, _ = convert_checkpoint(image_level_checkpoint())
    check = check_transfer_with_config(
        weights, str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_mocov2_200ep.yaml"), TINY_R50
    )
    assert check.ok and "backbone.bottom_up.res5.2.conv3.weight" in check.loaded
    assert not any(PART_MODEL_KEYS["fpn"].search(k) for k in check.loaded), (
        "no FPN in an image-level checkpoint"
    )
