"""``MODEL.FREEZE_PARTS``: frozen parts take no gradient, their BN becomes FrozenBatchNorm2d, and a
fine-tune (precise BN included) leaves their weights and statistics exactly as loaded."""

import importlib.util
import pickle

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn
from transfer_testing import (
    CONFIGS,
    REPO,
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
from soco.detection import TransferTrainer, load_transfer_config
from soco.detection.freeze import freeze_parts

spec = importlib.util.spec_from_file_location("train_net", REPO / "tools" / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

FPN_CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")
C4_CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml")


def _model(config: str, parts: str) -> nn.Module:
    cfg = load_transfer_config(config, [*TINY_R50, "MODEL.DEVICE", "cpu", "MODEL.FREEZE_PARTS", parts])
    return TransferTrainer.build_model(cfg)


def _in(part: str, key: str) -> bool:
    return bool(PART_MODEL_KEYS[part].search(key))


def test_frozen_parts_take_no_gradient_and_their_norms_are_frozen():
    model = _model(FPN_CONFIG, "['backbone', 'fpn']")
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


def test_c4_backbone_includes_the_head_res5_but_not_its_new_norm():
    model = _model(C4_CONFIG, "['backbone']")
    assert not model.roi_heads.res5[0].conv1.weight.requires_grad
    assert isinstance(model.roi_heads.res5[0].conv1.norm, FrozenBatchNorm2d)
    assert not isinstance(model.roi_heads.res5.norm, FrozenBatchNorm2d), "res5.norm is new: trained"
    assert all(p.requires_grad for p in model.roi_heads.res5.norm.parameters())


def test_unknown_or_absent_parts_are_errors():
    with pytest.raises(
        ValueError, match=r"unknown part\(s\) \['neck'\]; choose from \['backbone', 'fpn', 'box_head'\]"
    ):
        _model(FPN_CONFIG, "['backbone', 'neck']")
    with pytest.raises(ValueError, match="this model has no 'fpn'"):
        _model(C4_CONFIG, "['fpn']")
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
