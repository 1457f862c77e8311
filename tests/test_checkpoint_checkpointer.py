"""Weights that cannot run code: every path that reads a checkpoint (soco's reader, the converters,
Detectron2's checkpointer under train_net) refuses a crafted pickle without running it, and still reads
.pkl / .pth / .safetensors weights."""

import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from scripts_testing import load_script
from transfer_testing import (
    CONFIGS,
    TINY_FINETUNE,
    TINY_R50,
    build_transfer_model,
    poison_,
    soco_fpn_checkpoint,
    write_tiny_coco_dataset,
)

from soco.checkpoint import (
    CheckpointReadError,
    SafeDetectionCheckpointer,
    convert_checkpoint,
    detectron2_payload,
    publish_checkpoint,
    save_weights,
)
from soco.utils.cli import run

FPN_CONFIG = "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml"


class _CreatesAFile:
    """Unpickling this creates ``path`` (what a crafted "pretrained model" would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def crafted(tmp_path):
    """``(pkl, pth, marker)``: Detectron2-style weights with a payload that creates ``marker``."""
    marker = tmp_path / "created_by_unpickling"
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    payload = {**detectron2_payload(weights), "x": _CreatesAFile(marker)}
    pkl, pth = tmp_path / "crafted.pkl", tmp_path / "crafted.pth"
    pkl.write_bytes(pickle.dumps(payload, protocol=2))
    torch.save({**payload, "model": {k: torch.from_numpy(v) for k, v in weights.items()}}, pth)
    return pkl, pth, marker


def test_the_crafted_file_runs_code_under_plain_detectron2(crafted):
    pkl, _, marker = crafted
    DetectionCheckpointer(build_transfer_model(FPN_CONFIG, TINY_R50)).load(str(pkl))
    assert marker.exists(), "the fixture's payload must be live for the refusals below to mean anything"


@pytest.mark.parametrize("suffix", ["pkl", "pth"])
def test_safe_checkpointer_refuses_crafted_files(crafted, suffix):
    pkl, pth, marker = crafted
    path = str(pkl if suffix == "pkl" else pth)
    model = build_transfer_model(FPN_CONFIG, TINY_R50)
    with pytest.raises(CheckpointReadError, match=r"builtins\.open|io\.open") as info:
        SafeDetectionCheckpointer(model).load(path)
    assert str(info.value).startswith(path) and "MODEL.TRUST_PICKLE" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("folder", "script", "output"),
    [
        ("converters", "convert_to_detectron2", "out.pkl"),
        ("converters", "convert_to_torchvision", "out.pth"),
        ("converters", "extract_backbone_weights", "out.safetensors"),
        ("converters", "publish_model", "out"),
        ("converters", "convert_to_mmdetection", "out.pth"),
    ],
)
def test_converters_refuse_crafted_files(crafted, tmp_path, capsys, folder, script, output):
    pkl, pth, marker = crafted
    for source in (pkl, pth):
        assert run(load_script(f"{folder}/{script}.py").main, [str(source), str(tmp_path / output)]) == 2
        error = capsys.readouterr().err
        assert f"error: {source}: cannot read the checkpoint: the file holds Python objects" in error
        assert "--trust-pickle" in error
    assert not marker.exists() and not list(tmp_path.glob("out*"))


def test_train_net_refuses_crafted_weights(crafted, tmp_path):
    pkl, _, marker = crafted
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path / "data", num_images=2))
    train_net = load_script("tools/train_net.py")
    args = train_net.build_argument_parser().parse_args(
        [
            "--config-file", str(CONFIGS / FPN_CONFIG),
            "--register-coco", "crafted_weights_train", json_file, images,
            *TINY_FINETUNE,
            "DATASETS.TRAIN", "('crafted_weights_train',)",
            "DATASETS.TEST", "()",
            "OUTPUT_DIR", str(tmp_path / "run"),
            "MODEL.WEIGHTS", str(pkl),
        ]
    )  # fmt: skip
    with pytest.raises(CheckpointReadError, match="MODEL.TRUST_PICKLE"):
        train_net.main(args)
    assert not marker.exists()


def test_trust_pickle_is_the_way_to_unrestricted_loading(crafted):
    pkl, _, marker = crafted
    model = build_transfer_model(FPN_CONFIG, TINY_R50)
    SafeDetectionCheckpointer(model, trust_pickle=True)._load_file(str(pkl))
    assert marker.exists()


def _tiny_weights():
    weights, _ = convert_checkpoint(soco_fpn_checkpoint())
    return weights


@pytest.mark.parametrize("suffix", [".pkl", ".safetensors"])
def test_safe_checkpointer_loads_converted_weights(tmp_path, suffix):
    weights = _tiny_weights()
    path = str(tmp_path / f"converted{suffix}")
    save_weights(detectron2_payload(weights), path)
    model = build_transfer_model(FPN_CONFIG, TINY_R50)
    poison_(model)
    SafeDetectionCheckpointer(model).load(path)  # matching heuristics: read from the .safetensors metadata
    state = model.state_dict()
    for name in ("stem.conv1.weight", "res4.2.conv2.norm.running_var", "fpn_output3.weight"):
        model_key = name if name.startswith("fpn") else f"bottom_up.{name}"
        np.testing.assert_array_equal(state[f"backbone.{model_key}"].numpy(), weights[name])
    fc1 = state["roi_heads.box_head.fc1.weight"].numpy()
    np.testing.assert_array_equal(fc1, weights["box_head.fc1.weight"])


def test_published_safetensors_load_in_detectron2(tmp_path, capsys):
    source = tmp_path / "model_final.pth"
    checkpoint = soco_fpn_checkpoint()
    torch.save(checkpoint, source)
    assert load_script("converters/publish_model.py").main([str(source), str(tmp_path / "soco_fpn")]) == 0
    published = capsys.readouterr().out.split()[1]
    assert published.endswith(".safetensors")
    online = {k: v for k, v in checkpoint["model"].items() if k.startswith(("backbone.", "roi_heads."))}
    for checkpointer in (DetectionCheckpointer, SafeDetectionCheckpointer):
        model = build_transfer_model(FPN_CONFIG, TINY_R50)
        poison_(model)
        checkpointer(model).load(published)  # our model's own names: no renaming needed
        state = model.state_dict()
        for key, value in online.items():
            assert torch.equal(state[key], value), key


def test_publish_writes_the_file_type_asked_for(tmp_path):
    source = tmp_path / "model_final.pth"
    torch.save(soco_fpn_checkpoint(), source)
    assert publish_checkpoint(str(source), str(tmp_path / "a")).path.endswith(".safetensors")
    assert publish_checkpoint(str(source), str(tmp_path / "b.pkl")).path.endswith(".pkl")
    publish = load_script("converters/publish_model.py")
    assert publish.main([str(source), str(tmp_path / "c"), "--file-type", "pth"]) == 0
    assert len(list(tmp_path.glob("c-*.pth"))) == 1
    with pytest.raises(SystemExit):
        publish.main([str(source), str(tmp_path / "d.pkl"), "--file-type", "pth"])
