"""Publishing our checkpoints: online weights only, sha256 prefix in the file name."""

import re

import pytest
import torch
from transfer_testing import image_level_checkpoint, soco_fpn_checkpoint

from soco.checkpoint import convert_checkpoint, load_checkpoint, publish_checkpoint
from soco_proposals.fileio import sha256_of


def test_publish_strips_training_state_target_and_queues(tmp_path):
    source = tmp_path / "model_final.pth"
    checkpoint = image_level_checkpoint()
    torch.save(checkpoint, source)
    report = publish_checkpoint(str(source), str(tmp_path / "release" / "mocov2_tiny.pth"))
    m = re.fullmatch(r".*/release/mocov2_tiny-([0-9a-f]{8})\.pth", report.path)
    assert m and sha256_of(report.path).startswith(m[1])
    published = load_checkpoint(report.path)
    assert set(published) == {"model", "__author__"}
    keys = set(published["model"])
    assert not any(k.startswith(("target.", "queue.", "dense_queue.")) for k in keys)
    assert {"backbone.stem.conv1.weight", "projector.0.weight", "dense_projector.2.bias"} <= keys
    assert report.kept == len(keys)
    reasons = {reason for _, reason in report.dropped}
    assert reasons == {"momentum target network", "negative-key queue", "training state"}
    assert sorted(k for k, r in report.dropped if r == "training state") == [
        "iteration",
        "optimizer",
        "scheduler",
    ]
    assert not list((tmp_path / "release").glob("*.partial*"))
    _, conversion = convert_checkpoint(published)
    assert conversion.format_name == "soco"


def test_publish_keeps_fpn_and_box_head(tmp_path):
    source = tmp_path / "fpn.pth"
    torch.save(soco_fpn_checkpoint(), source)
    report = publish_checkpoint(str(source), str(tmp_path / "fpn_pub"))
    assert report.path.endswith(".safetensors"), "an output without a suffix is published as .safetensors"
    keys = load_checkpoint(report.path)["model"]
    assert "backbone.fpn_lateral2.norm.weight" in keys and "roi_heads.box_head.fc1.weight" in keys
    assert "published" in report.summary() and "momentum target network" in report.summary()


def test_publish_refuses_other_layouts(tmp_path):
    source = tmp_path / "tv.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, source)
    with pytest.raises(ValueError, match="not a soco pretraining checkpoint"):
        publish_checkpoint(str(source), str(tmp_path / "out.pth"))
