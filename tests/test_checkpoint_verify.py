"""Matching converted weights onto a fine-tuning model, as DetectionCheckpointer does."""

from transfer_testing import TINY_R50, build_transfer_model, image_level_checkpoint

from soco.checkpoint import check_transfer, convert_checkpoint


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

