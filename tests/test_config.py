"""Config keys: the PRETRAIN namespace, errors for renamed keys, YAML files that state only differences."""

from pathlib import Path

import pytest
from config_testing import keys_equal_to_base
from detectron2.config import get_cfg

from soco.config import RENAMED_KEYS, add_soco_config
from soco.detection import load_transfer_config
from soco.engine.linear import add_linear_config
from soco.engine.pretrain import load_pretrain_cfg

REPO = Path(__file__).resolve().parents[1]
PRETRAIN_CONFIGS = sorted((REPO / "soco" / "configs").rglob("*.yaml"))
FINETUNE_CONFIGS = sorted((REPO / "detectron2_configs").rglob("*.yaml"))


def _pretrain_cfg():
    cfg = get_cfg()
    add_soco_config(cfg)
    return cfg


def _linear_cfg():
    cfg = _pretrain_cfg()
    add_linear_config(cfg)
    return cfg


def _is_linear(path: Path) -> bool:
    """Linear-classification configs (soco/configs/linear/ and the leaves built on them) have LINEAR keys."""
    return path.parent.name == "linear" or path.name == "Linear.yaml"


def test_shared_keys_live_under_pretrain_and_methods_keep_their_own():
    cfg = _pretrain_cfg()
    assert set(cfg.PRETRAIN) == {"DATA", "MOMENTUM", "EVAL_PERIOD", "PROBES"}
    assert cfg.PRETRAIN.EVAL_PERIOD == 0  # probes are off by default
    assert set(cfg.PRETRAIN.DATA) == {
        "IMAGE_ROOT", "PROPOSALS", "VIEW_GENERATOR", "PIXEL_MEAN", "PIXEL_STD",
        "CORPUS_INDEX", "EXCLUDE_FAILED", "EXCLUDE_LIST", "FAST_PHOTOMETRIC",
    }  # fmt: skip
    assert "DATA" not in cfg.SOCO and "MOMENTUM" not in cfg.SOCO
    for method in ("SOCO", "MOCO", "SWAV", "DENSECL"):
        assert method in cfg


@pytest.mark.parametrize("old", sorted(k for k in RENAMED_KEYS if k.count(".") == 2))
def test_an_old_key_on_the_command_line_names_the_new_one(old):
    with pytest.raises(KeyError, match=f"Key {old} was renamed to {RENAMED_KEYS[old]}"):
        load_pretrain_cfg(str(REPO / "soco" / "configs" / "tiny" / "SoCo_FPN.yaml"), [old, "x"])


def test_an_old_section_in_a_yaml_names_the_new_one(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(f'_BASE_: "{REPO}/soco/configs/tiny/MoCoV2.yaml"\nSOCO:\n  DATA:\n    IMAGE_ROOT: imgs/\n')
    with pytest.raises(KeyError, match="Key SOCO.DATA was renamed to PRETRAIN.DATA"):
        load_pretrain_cfg(str(old), [])
    old.write_text(f'_BASE_: "{REPO}/soco/configs/tiny/MoCoV2.yaml"\nSOCO:\n  MOMENTUM:\n    BASE: 0.9\n')
    with pytest.raises(KeyError, match="Key SOCO.MOMENTUM was renamed to PRETRAIN.MOMENTUM"):
        load_pretrain_cfg(str(old), [])


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_pretraining_yaml_states_only_what_differs_from_its_base(path):
    assert keys_equal_to_base(path, _linear_cfg if _is_linear(path) else _pretrain_cfg) == []


@pytest.mark.parametrize("path", FINETUNE_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_finetuning_yaml_states_only_what_differs_from_its_base(path):
    # a fine-tuning leaf is one initialisation: it always names its weights, "" (scratch) included
    assert [key for key in keys_equal_to_base(path, get_cfg) if key != "MODEL.WEIGHTS"] == []


def test_the_redundancy_check_sees_a_repeated_default(tmp_path):
    leaf = tmp_path / "leaf.yaml"
    base = REPO / "soco" / "configs" / "MoCoV2_200ep.yaml"
    leaf.write_text(f'_BASE_: "{base}"\nMOCO:\n  TEMPERATURE: 0.2\n  EMBED_DIM: 64\n')
    assert keys_equal_to_base(leaf, _pretrain_cfg) == ["MOCO.TEMPERATURE"]


def test_published_recipes_keep_their_values():
    soco_fpn = load_pretrain_cfg(str(REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"), [])
    solver = soco_fpn.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.EPOCHS, solver.WARMUP_EPOCHS) == (2048, 1.0, 100, 10)
    assert soco_fpn.PRETRAIN.DATA.VIEW_GENERATOR == "SoCoFPNViews" and soco_fpn.SOCO.CUTOUT.ENABLED
    assert (soco_fpn.PRETRAIN.MOMENTUM.BASE, soco_fpn.PRETRAIN.MOMENTUM.SCHEDULE) == (0.99, "cosine")
    assert soco_fpn.SOCO.VIEWS.SIZES == [224, 224, 112] and soco_fpn.SOCO.BOXES.NUM_PER_PAIR == 4
    assert list(soco_fpn.SOCO.BOXES.LEVEL_THRESHOLDS) == [48, 96, 192, 224]
    c4 = load_pretrain_cfg(str(REPO / "soco" / "configs" / "SoCo_C4_100ep.yaml"), [])
    assert c4.MODEL.ROI_HEADS.IN_FEATURES == ["res4"] and c4.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION == 14
    assert tuple(c4.SOCO.VIEWS.CROP_SCALE) == (0.6, 1.0) and c4.SOCO.BOXES.JITTER_PROB == 0.0
    moco = load_pretrain_cfg(str(REPO / "soco" / "configs" / "MoCoV2_200ep.yaml"), [])
    assert (moco.MOCO.QUEUE_LENGTH, moco.MOCO.TEMPERATURE, moco.MOCO.EMBED_DIM) == (65536, 0.2, 128)
    assert (moco.PRETRAIN.MOMENTUM.BASE, moco.PRETRAIN.MOMENTUM.SCHEDULE) == (0.999, "constant")
    assert (moco.SOLVER.OPTIMIZER, moco.SOLVER.BASE_LR, moco.SOLVER.WEIGHT_DECAY) == ("SGD", 0.03, 1e-4)
    swav = load_pretrain_cfg(str(REPO / "soco" / "configs" / "SwAV_200ep.yaml"), [])
    assert (swav.SWAV.NUM_PROTOTYPES, swav.SWAV.QUEUE_LENGTH, swav.SOLVER.OPTIMIZER) == (3000, 3840, "LARS")
    scratch = load_transfer_config(str(REPO / "detectron2_configs/coco/mask_rcnn_R_50_FPN_1x_scratch.yaml"))
    assert scratch.MODEL.WEIGHTS == "" and scratch.MODEL.RPN.POST_NMS_TOPK_TEST == 1000
