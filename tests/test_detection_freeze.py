"""``MODEL.FREEZE_PARTS``: frozen parts take no gradient, their BN becomes FrozenBatchNorm2d, and a
fine-tune (precise BN included) leaves their weights and statistics exactly as loaded."""

import pickle
import re

import numpy as np
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils.env import seed_all_rng
from scripts_testing import load_script
from torch import nn
from transfer_testing import (
    CONFIGS,
    TINY_FINETUNE,
    TINY_R50,
    soco_fpn_checkpoint,
    write_tiny_coco_dataset,
)

from soco.checkpoint import (
    PART_MODEL_KEYS,
    check_transfer,
    convert_checkpoint,
    detectron2_payload,
    save_pickle,
)
from soco.data import register_coco_format_datasets
from soco.detection import TransferTrainer, load_transfer_config
from soco.detection.freeze import freeze_parts, frozen_part_names, held_parts

train_net = load_script("tools/train_net.py")

FPN_CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")
C4_CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml")


@pytest.fixture(scope="module")
def soco_weights(tmp_path_factory) -> str:
    """Converted SoCo FPN weights (backbone, FPN, box head): the parts frozen below are loaded ones."""
    path = tmp_path_factory.mktemp("soco") / "soco.pkl"
    save_pickle(detectron2_payload(convert_checkpoint(soco_fpn_checkpoint(randomize=False))[0]), str(path))
    return str(path)


def _model(config: str, parts: str, weights: str) -> nn.Module:
    opts = [*TINY_R50, "MODEL.DEVICE", "cpu", "MODEL.FREEZE_PARTS", parts, "MODEL.WEIGHTS", weights]
    cfg = load_transfer_config(config, opts)
    return TransferTrainer.build_model(cfg)


def _in(part: str, key: str) -> bool:
    return bool(PART_MODEL_KEYS[part].search(key))


def test_frozen_parts_take_no_gradient_and_their_norms_are_frozen(soco_weights):
    model = _model(FPN_CONFIG, "['backbone', 'fpn']", soco_weights)
    for key, param in model.named_parameters():
        frozen = _in("backbone", key) or _in("fpn", key)
        assert param.requires_grad is not frozen, key
    for name, module in model.named_modules():
        if _in("backbone", name + ".") or _in("fpn", name + "."):
            assert not isinstance(module, nn.modules.batchnorm._BatchNorm), name
    norm = model.backbone.bottom_up.res3[0].conv1.norm
    assert isinstance(norm, FrozenBatchNorm2d) and isinstance(
        model.backbone.fpn_lateral2.norm, FrozenBatchNorm2d
    )
    assert isinstance(model.roi_heads.box_head.conv1.norm, nn.SyncBatchNorm), "box head still trained"
    assert model.roi_heads.box_head.fc1.weight.requires_grad


def test_c4_backbone_includes_the_head_res5_but_not_its_new_norm(soco_weights):
    model = _model(C4_CONFIG, "['backbone']", soco_weights)
    assert not model.roi_heads.res5[0].conv1.weight.requires_grad
    assert isinstance(model.roi_heads.res5[0].conv1.norm, FrozenBatchNorm2d)
    assert not isinstance(model.roi_heads.res5.norm, FrozenBatchNorm2d), "res5.norm is new: trained"
    assert all(p.requires_grad for p in model.roi_heads.res5.norm.parameters())


def test_unknown_or_absent_parts_are_errors(soco_weights):
    with pytest.raises(
        ValueError, match=r"unknown part\(s\) \['neck'\]; choose from \['backbone', 'fpn', 'box_head'\]"
    ):
        _model(FPN_CONFIG, "['backbone', 'neck']", soco_weights)
    with pytest.raises(ValueError, match="this model has no 'fpn'"):
        _model(C4_CONFIG, "['fpn']", soco_weights)
    assert freeze_parts(nn.Sequential(), []) == {}


def test_fine_tuning_leaves_frozen_weights_and_statistics_as_loaded(tmp_path):
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path / "shapes", num_images=4))
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    for value in weights.values():
        if value.dtype.kind == "f":
            value += 0.01  # BN statistics away from 0 / 1
    path = tmp_path / "soco.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    out = tmp_path / "run"
    argv = [
        "--config-file", FPN_CONFIG,
        "--register-coco", "freeze_train", json_file, images,
        "--register-coco", "freeze_val", json_file, images,
        *TINY_FINETUNE, "DATASETS.TRAIN", "('freeze_train',)", "DATASETS.TEST", "('freeze_val',)",
        "SOLVER.MAX_ITER", "2", "MODEL.WEIGHTS", str(path), "MODEL.FREEZE_PARTS", "['backbone', 'fpn']",
        "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    train_net.main(train_net.build_argument_parser().parse_args(argv))
    final = torch.load(out / "model_final.pth", map_location="cpu")["model"]
    loaded = check_transfer(final, weights).loaded
    assert loaded, "the weights load into the fine-tuned model"
    changed = {
        key for key, name in loaded.items() if not torch.equal(final[key], torch.as_tensor(weights[name]))
    }
    frozen = {key for key in loaded if _in("backbone", key) or _in("fpn", key)}
    assert any(key.endswith("norm.running_mean") for key in frozen) and any(
        ".fpn_output3." in k for k in frozen
    )
    assert not changed & frozen, sorted(changed & frozen)[:5]
    box_head = {key for key in loaded if _in("box_head", key)}
    assert box_head and box_head <= changed, sorted(box_head - changed)  # weights and statistics alike
    log = (out / "log.txt").read_text()
    assert (
        "MODEL.FREEZE_PARTS: fpn frozen" in log and "Computing precise BN statistics for 8 BN layers" in log
    )
    assert pickle.loads(path.read_bytes())["model"].keys() == weights.keys()


@pytest.fixture(scope="module")
def calibration_data(tmp_path_factory) -> list[str]:
    """A registered tiny training set and the options of a model trained on it."""
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path_factory.mktemp("calib") / "shapes", 4))
    register_coco_format_datasets([["calib_train", json_file, images]])
    return [*TINY_FINETUNE, "DATASETS.TRAIN", "('calib_train',)", "MODEL.FREEZE_CALIBRATION_ITERS", "2",
            "MODEL.WEIGHTS", ""]  # fmt: skip


def _built(opts: list[str], seed: int = 0) -> nn.Module:
    seed_all_rng(seed)
    return TransferTrainer.build_model(load_transfer_config(FPN_CONFIG, opts))


def test_random_frozen_parts_are_the_seeds_init_for_every_weights_file_and_their_bn_is_calibrated(
    calibration_data, tmp_path
):
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    backbone_file = tmp_path / "backbone.pkl"
    backbone = {k: v for k, v in weights.items() if _in("backbone", k)}
    save_pickle(detectron2_payload(backbone), str(backbone_file))
    frozen = [*calibration_data, "MODEL.FREEZE_PARTS", "['backbone', 'fpn']"]
    pretrained = _built([*frozen, "MODEL.WEIGHTS", str(backbone_file)]).state_dict()
    scratch = _built([*frozen, "MODEL.WEIGHTS", ""]).state_dict()
    fpn_convs = [k for k in scratch if _in("fpn", k) and k.split(".")[-2] != "norm"]
    assert fpn_convs and all(torch.equal(pretrained[k], scratch[k]) for k in fpn_convs), "same seed: same"
    other_seed = _built([*frozen, "MODEL.WEIGHTS", ""], seed=1).state_dict()
    assert not torch.equal(other_seed[fpn_convs[0]], scratch[fpn_convs[0]]), "another seed, another init"
    backbone_var = "backbone.bottom_up.res3.0.conv1.norm.running_var"
    assert not torch.equal(pretrained[backbone_var], scratch[backbone_var]), "the loaded backbone"
    calibrated = [(scratch, backbone_var), *((state, "backbone.fpn_lateral3.norm.running_var")
                                             for state in (pretrained, scratch))]  # fmt: skip
    for state, key in calibrated:  # set on the data: no longer the init's mean 0 / var 1
        assert not torch.allclose(state[key], torch.ones_like(state[key])), key
    fpn_mean = "backbone.fpn_lateral3.norm.running_mean"
    assert not torch.equal(pretrained[fpn_mean], scratch[fpn_mean]), "calibrated on each backbone's features"
    assert torch.equal(pretrained[backbone_var], torch.as_tensor(weights["res3.0.conv1.norm.running_var"]))


def test_calibration_changes_only_its_parts_and_leaves_the_random_streams_as_they_were(calibration_data):
    calibrated = _built([*calibration_data, "MODEL.FREEZE_PARTS", "['backbone']"]).state_dict()
    after_calibration = torch.rand(4), np.random.rand(2)
    plain = _built(calibration_data).state_dict()
    after_plain_build = torch.rand(4), np.random.rand(2)
    assert torch.equal(after_calibration[0], after_plain_build[0])
    assert np.array_equal(after_calibration[1], after_plain_build[1])
    changed = {key for key in plain if key in calibrated and not torch.equal(plain[key], calibrated[key])}
    # only the backbone's statistics: the BN of the trained parts (RPN, heads) keeps its initial state
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert changed and all(_in("backbone", k) and k.endswith(statistics) for k in changed), sorted(changed)


def test_random_frozen_bn_that_cannot_be_calibrated_is_refused(calibration_data):
    frozen = [*calibration_data, "MODEL.FREEZE_PARTS", "['backbone']"]
    refused = r"freezes \['backbone'\], which MODEL.WEIGHTS \(empty: random init\) does not hold; their BN"
    with pytest.raises(ValueError, match=refused + r".* MODEL.FREEZE_CALIBRATION_ITERS > 0"):
        _built([*frozen, "MODEL.FREEZE_CALIBRATION_ITERS", "0"])
    with pytest.raises(ValueError, match="MODEL.BACKBONE.FREEZE_AT 2 already froze some of their BN layers"):
        _built([*frozen, "MODEL.BACKBONE.FREEZE_AT", "2"])


def test_frozen_part_names_include_the_stages_freeze_at_freezes():
    def names(*opts: str) -> list[str]:
        return frozen_part_names(load_transfer_config(FPN_CONFIG, list(opts)))

    assert names() == [], "the SSL configs fine-tune everything (FREEZE_AT 0)"
    assert names("MODEL.BACKBONE.FREEZE_AT", "2") == ["backbone.stem", "backbone.res2"]
    at_2 = ("MODEL.BACKBONE.FREEZE_AT", "2")
    assert names(*at_2, "MODEL.FREEZE_PARTS", "['fpn']") == ["backbone.stem", "backbone.res2", "fpn"]
    assert names(*at_2, "MODEL.FREEZE_PARTS", "['backbone', 'fpn']") == ["backbone", "fpn"]


def test_a_weights_file_without_a_backbone_is_refused_naming_the_file(soco_weights, tmp_path):
    assert held_parts(soco_weights) == ["backbone", "fpn", "box_head"]
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    headless = tmp_path / "fpn_and_box_head.pkl"
    head = {k: v for k, v in weights.items() if not _in("backbone", k)}
    save_pickle(detectron2_payload(head), str(headless))
    refused = re.escape(f"MODEL.WEIGHTS {headless}: none of its {len(head)} tensor names is a backbone one")
    with pytest.raises(ValueError, match=refused):
        held_parts(str(headless))


def test_a_caffe2_imagenet_file_holds_the_backbone_under_detectron2_names(tmp_path):
    """Detectron2's ImageNet models (``detectron2://ImageNetPretrained/MSRA/R-50.pkl``) name their blobs the
    Caffe2 way; ``DetectionCheckpointer`` renames them, and so does the count of held parts."""
    path = tmp_path / "R-50.pkl"
    blobs = {"conv1_w": (2, 3, 7, 7), "res2_0_branch2a_w": (2, 2, 1, 1), "fc1000_w": (3, 2)}
    with open(path, "wb") as f:
        pickle.dump({name: np.zeros(shape, np.float32) for name, shape in blobs.items()}, f)
    assert held_parts(str(path)) == ["backbone"]
