"""From a real tiny pretraining run (the engine of tools/pretrain_net.py) to the fine-tuning model:
convert its checkpoint and load it with DetectionCheckpointer into the matching bundled config."""

from pathlib import Path

import pytest
import torch
from pretrain_testing import run_pretraining, write_tiny_corpus
from transfer_testing import assert_sources_in_place, load_round_trip, ours_oracle

PRETRAIN_CONFIGS = Path(__file__).resolve().parents[1] / "soco" / "configs" / "tiny"
R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
# fine-tuning overrides matching each tiny pretraining config (soco/configs/tiny/*.yaml)
FPN_R18 = R18 + [
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
]
C4_R18 = R18 + ["MODEL.RESNETS.WIDTH_PER_GROUP", "16"]

CASES = {
    # pretraining config: (fine-tuning config, overrides, parts that must load)
    "SoCo_FPN": ("coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml", FPN_R18, ("backbone", "fpn", "box_head")),
    "SoCo_C4": ("coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml", C4_R18, ("backbone",)),
    "MoCoV2": ("coco/mask_rcnn_R_50_FPN_1x_mocov2_200ep.yaml", FPN_R18, ("backbone",)),
    "SwAV": ("coco/mask_rcnn_R_50_FPN_1x_swav_800ep.yaml", FPN_R18, ("backbone",)),
    "DenseCL": ("coco/mask_rcnn_R_50_FPN_1x_densecl_200ep.yaml", FPN_R18, ("backbone",)),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("variant", sorted(CASES))
def test_tiny_pretraining_checkpoint_fills_the_fine_tuning_model(variant, corpus, tmp_path):
    opts = corpus if variant.startswith("SoCo") else corpus[:2]
    run_pretraining(
        str(PRETRAIN_CONFIGS / f"{variant}.yaml"), tmp_path / "pretrain", [*opts, "SOLVER.MAX_ITER", "3"]
    )
    checkpoint = torch.load(tmp_path / "pretrain" / "model_final.pth", map_location="cpu", weights_only=True)
    config, overrides, parts = CASES[variant]
    state, _, report = load_round_trip(tmp_path, checkpoint, config, overrides)
    assert report.format_name == "soco"
    kept_parts = {part for _, _, part in report.kept}
    assert kept_parts == set(parts)
    reasons = {reason for _, reason in report.dropped}
    assert any("target" in r for r in reasons) == (variant != "SwAV"), reasons  # SwAV has no momentum branch
    assert "pretraining head" in reasons
    online = {k: v for k, v in checkpoint["model"].items() if k.startswith(("backbone.", "roi_heads."))}
    assert_sources_in_place(state, online, ours_oracle, fpn_model="FPN" in config)
