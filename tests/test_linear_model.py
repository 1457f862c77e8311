"""The linear classifier: frozen backbone in eval mode, strict weight loading, the per-epoch lr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from linear_testing import TINY_CONFIG, write_colour_folder
from transfer_testing import moco_release

from soco.checkpoint import CheckpointLayoutError, detectron2_payload, save_pickle
from soco.data.labeled_images import list_labeled_images
from soco.engine.linear import EpochwiseLR, build_linear_classifier, load_backbone_weights, load_linear_cfg
from soco.engine.linear import run as linear_run
from soco.engine.linear.model import backbone_snapshot, changed_tensors


def _cfg(*opts: str):
    base = ["LINEAR.DATA.TRAIN", "unused", "LINEAR.DATA.VAL", "unused"]
    return load_linear_cfg(TINY_CONFIG, [*base, *opts])


def _random_classifier(num_classes: int = 3):
    torch.manual_seed(0)
    return build_linear_classifier(_cfg("LINEAR.RANDOM_INIT", "True"), num_classes)


def test_training_steps_move_only_the_head_and_never_the_bn_statistics():
    model = _random_classifier()
    snapshot = backbone_snapshot(model)
    head = model.head.weight.detach().clone()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0, momentum=0.9)
    model.train()
    assert not model.backbone.training and model.head.training
    for _ in range(3):
        images = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
        loss = model({"image": images, "label": torch.tensor([0, 1, 2, 0])})["loss_cls"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert changed_tensors(model, snapshot) == []
    assert not torch.equal(model.head.weight, head)


def test_changed_backbone_tensors_are_named():
    model = _random_classifier()
    snapshot = backbone_snapshot(model)
    model.backbone.train()  # the bug the check catches: a forward in train mode updates BN statistics
    model.backbone(torch.rand(2, 3, 32, 32))
    changed = changed_tensors(model, snapshot)
    assert "stem.conv1.norm.running_mean" in changed
    assert not any(name.endswith(".weight") and "norm" not in name for name in changed)


def test_head_initialisation_is_normal_001_with_zero_bias():
    model = _random_classifier(num_classes=200)
    head = model.head
    assert float(head.bias.detach().abs().max()) == 0.0
    assert abs(float(head.weight.detach().std()) - 0.01) < 0.001


def _backbone_file(tmp_path, drop: str | None = None):
    weights = {k: v.numpy() for k, v in _random_classifier().backbone.state_dict().items()}
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked") and k != drop}
    path = tmp_path / "backbone.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    return path, weights


def test_converted_pkl_loads_into_every_backbone_tensor(tmp_path):
    path, weights = _backbone_file(tmp_path)
    model = build_linear_classifier(_cfg("MODEL.WEIGHTS", str(path)), 3)
    for name, value in model.backbone.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(value.numpy(), weights[name])


def test_official_moco_release_loads_its_query_encoder(tmp_path):
    resnet18 = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(moco_release(resnet18), tmp_path / "moco_v2_200ep_pretrain.pth.tar")
    model = build_linear_classifier(
        _cfg("MODEL.WEIGHTS", str(tmp_path / "moco_v2_200ep_pretrain.pth.tar")), 3
    )
    torch.testing.assert_close(
        model.backbone.res4[1].conv2.norm.running_var, resnet18["layer3.1.bn2.running_var"]
    )
    torch.testing.assert_close(model.backbone.stem.conv1.weight, resnet18["conv1.weight"])


def test_weights_missing_a_backbone_tensor_are_refused_naming_it(tmp_path):
    path, _ = _backbone_file(tmp_path, drop="res4.1.conv2.norm.running_var")
    with pytest.raises(CheckpointLayoutError, match=r"res4\.1\.conv2\.norm\.running_var"):
        build_linear_classifier(_cfg("MODEL.WEIGHTS", str(path)), 3)


def test_weights_of_another_architecture_are_refused_naming_the_tensors(tmp_path):
    path, _ = _backbone_file(tmp_path)  # ResNet-18 weights, a ResNet-34 config
    with pytest.raises(
        CheckpointLayoutError,
        match=r"80 backbone tensors are missing: res2\.2\.conv1\.weight, .*check MODEL\.RESNETS",
    ):
        build_linear_classifier(_cfg("MODEL.WEIGHTS", str(path), "MODEL.RESNETS.DEPTH", "34"), 3)


def test_shape_mismatch_is_refused_and_nothing_is_copied():
    model = _random_classifier()
    weights = {k: v.numpy().copy() for k, v in model.backbone.state_dict().items()}
    weights["res5.1.conv1.weight"] = np.zeros((512, 512, 1, 1), dtype=np.float32)
    weights["stem.conv1.weight"] = weights["stem.conv1.weight"] + 1
    before = model.backbone.stem.conv1.weight.detach().clone()
    with pytest.raises(
        CheckpointLayoutError, match=r"res5\.1\.conv1\.weight \(512, 512, 1, 1\) \(the model needs"
    ):
        load_backbone_weights(model.backbone, weights, "test weights")
    assert torch.equal(model.backbone.stem.conv1.weight, before)


def test_config_refusals_name_the_key_to_set():
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty.*LINEAR.RANDOM_INIT True"):
        _cfg()
    with pytest.raises(ValueError, match="derived from LINEAR.CHECKPOINT_PERIOD_EPOCHS"):
        _cfg("LINEAR.RANDOM_INIT", "True", "SOLVER.CHECKPOINT_PERIOD", "10")
    with pytest.raises(ValueError, match="LINEAR.CHECKPOINT_PERIOD_EPOCHS=0 must be >= 1"):
        _cfg("LINEAR.RANDOM_INIT", "True", "LINEAR.CHECKPOINT_PERIOD_EPOCHS", "0")


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("step", [1, 1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]), ("cosine", None)],
)
def test_lr_is_constant_within_each_epoch(schedule, expected):
    lr = EpochwiseLR(schedule, iters_per_epoch=3, max_iter=12, step_epochs=(2, 3), gamma=0.1)
    values = [lr(it / 12) for it in range(12)]
    if expected is not None:
        np.testing.assert_allclose(values, expected)
    else:
        per_epoch = [(1 + np.cos(np.pi * epoch / 4)) / 2 for epoch in range(4)]
        np.testing.assert_allclose(values, np.repeat(per_epoch, 3))


def test_num_classes_must_match_the_training_classes(tmp_path):
    data = list_labeled_images(write_colour_folder(tmp_path / "train", per_class=1))
    assert linear_run._num_classes(_cfg("LINEAR.RANDOM_INIT", "True"), data) == 3
    with pytest.raises(ValueError, match=r"LINEAR.NUM_CLASSES=1000 but .* has 3 classes"):
        linear_run._num_classes(_cfg("LINEAR.RANDOM_INIT", "True", "LINEAR.NUM_CLASSES", "1000"), data)
