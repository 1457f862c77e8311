"""run_probes / ProbeEvaluator: the keys of the configured probes only, NaN (never a number) for a diverged
model, undecodable images left out, and the same numbers when two processes each embed half of every split
while only the main one classifies."""

import logging
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from distributed_testing import run_distributed
from probes_testing import register_probe_box_sets, write_probe_image_folder
from transfer_testing import soco_fpn_checkpoint

from soco.checkpoint import convert_checkpoint
from soco.config import add_soco_config
from soco.data import register_coco_format_dataset
from soco.evaluation import (
    PROBE_KEYS,
    ProbeData,
    ProbeEvaluator,
    ProbeSettings,
    check_probe_config,
    embed_split,
    format_results,
    probes,
)


def _default_cfg():
    cfg = get_cfg()
    add_soco_config(cfg)
    return cfg


SETTINGS = replace(
    ProbeSettings.from_config(_default_cfg()),
    image_size=32, min_size_test=64, max_size_test=128, linear_steps=20, batch_size=2,
)  # fmt: skip


def _data(root: Path, with_images: bool = True, with_boxes: bool = True) -> ProbeData:
    train, test = register_probe_box_sets(root, f"run_{root.parent.name}_{root.name}", sizes=(5, 3))
    folder = str(write_probe_image_folder(root / "folder", per_class=(3, 2))) if with_images else ""
    return ProbeData.load(SETTINGS, folder, *((train, test) if with_boxes else ("", "")))


def _registered_data(root: Path, names: tuple[str, str]) -> ProbeData:
    """The probe data ``_data`` wrote under ``root``, registered again (in another process)."""
    for name in names:
        register_coco_format_dataset(name, str(root / name / "annotations.json"), str(root / name / "images"))
    return ProbeData.load(SETTINGS, str(root / "folder"), *names)


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    return convert_checkpoint(soco_fpn_checkpoint(randomize=False))[0]


OBJECT_KEYS = {key for key in PROBE_KEYS if key.startswith("probe/object_")}


def test_only_the_configured_probes_run(tmp_path, weights):
    both = ProbeEvaluator(_data(tmp_path / "both"), SETTINGS)(weights)
    assert set(both) == {*PROBE_KEYS, "probe/seconds"}
    images_only = ProbeEvaluator(_data(tmp_path / "images", with_boxes=False), SETTINGS)(weights)
    assert set(images_only) == {"probe/image_knn", "probe/seconds"}
    boxes_only = ProbeEvaluator(_data(tmp_path / "boxes", with_images=False), SETTINGS)(weights)
    assert set(boxes_only) == {*OBJECT_KEYS, "probe/seconds"}
    assert boxes_only["probe/object_knn"] == both["probe/object_knn"] and boxes_only["probe/seconds"] > 0


def test_a_diverged_model_scores_nan_with_an_error_naming_each_probe(tmp_path, weights, caplog):
    data = _data(tmp_path / "data")
    diverged = {name: value * float("nan") for name, value in weights.items()}
    with caplog.at_level(logging.ERROR, logger="soco.evaluation.probes"):
        results = ProbeEvaluator(data, SETTINGS)(diverged)
    assert all(math.isnan(results[key]) for key in PROBE_KEYS)  # argmax over NaN once scored 91.7 %
    errors = "\n".join(r.getMessage() for r in caplog.records)
    boxes = data.box_train.num_boxes
    assert f"probe object_linear_shared failed: {boxes} of {boxes} training and" in errors
    assert "probe image_knn failed: 6 of 6 training and 4 of 4 test features are not finite" in errors
    assert format_results(results).startswith("image_knn FAILED, object_knn FAILED")


def test_an_undecodable_probe_image_is_left_out_and_counted(tmp_path, weights, caplog, monkeypatch):
    data = _data(tmp_path / "data")
    data.image_train.files[0] = str(tmp_path / "missing.png")
    monkeypatch.setattr(probes, "PROGRESS_SECONDS", 0.0)  # a progress line after every decoded image
    with caplog.at_level(logging.INFO, logger="soco.evaluation.probes"):
        results = ProbeEvaluator(data, SETTINGS)(weights)
    assert 0 <= results["probe/image_knn"] <= 100
    assert data.image_train.failures[0].startswith("unreadable")
    assert "probe image folder" in caplog.text
    assert "1 of 6 images cannot be decoded and are left out of the probes (1 unreadable;" in caplog.text
    assert "/folder/train: decoded 6 / 6 images" in caplog.text
    # no val image decodes: the probe failed, it is not a number
    images_only = _data(tmp_path / "images", with_boxes=False)
    images_only.image_val.files[:] = [str(tmp_path / "missing.png")] * len(images_only.image_val)
    assert math.isnan(ProbeEvaluator(images_only, SETTINGS)(weights)["probe/image_knn"])
    assert "probe image_knn failed: 6 training and 0 test features" in caplog.text


def test_probe_config_errors_name_the_keys():
    cfg = _default_cfg()
    cfg.PRETRAIN.PROBES.BOX_TRAIN = cfg.PRETRAIN.PROBES.BOX_TEST = "boxes"
    with pytest.raises(ValueError, match="BOX_TRAIN and PRETRAIN.PROBES.BOX_TEST are the same dataset 'b"):
        check_probe_config(cfg)
    cfg.PRETRAIN.PROBES.BOX_TEST = "other"
    cfg.PRETRAIN.PROBES.KNN_NORMALIZATION = "l2"
    with pytest.raises(ValueError, match="KNN_NORMALIZATION is 'l2'; expected one of .*'centered'"):
        check_probe_config(cfg)


def _counted(classify, calls: list):
    def counted(*args, **kwargs):
        calls.append(classify.__name__)
        return classify(*args, **kwargs)

    return counted


def _embed_in_each_process(root: str, names: tuple[str, str], weights: dict, output: str) -> None:
    from detectron2.utils import comm

    torch.set_num_threads(1)
    calls = []
    for name in ("knn_accuracy", "linear_probe_accuracy"):
        setattr(probes, name, _counted(getattr(probes, name), calls))
    data = _registered_data(Path(root), names)
    evaluator = ProbeEvaluator(data, SETTINGS)
    results = evaluator(weights)
    features = embed_split(evaluator.encoder, data.box_train, SETTINGS.batch_size)
    cached = sum(len(split._cache) for split in (data.box_train, data.image_train))
    saved = {"results": results, "features": features, "cached": cached, "classifier_calls": len(calls)}
    torch.save(saved, f"{output}.rank{comm.get_rank()}")


def test_two_processes_embed_their_share_and_agree_with_one(tmp_path, weights):
    data = _data(tmp_path / "data")
    evaluator = ProbeEvaluator(data, SETTINGS)
    single = evaluator(weights)
    features, labels = embed_split(evaluator.encoder, data.box_train, SETTINGS.batch_size)
    names = (f"run_{tmp_path.name}_data_train", f"run_{tmp_path.name}_data_test")
    args = (str(tmp_path / "data"), names, weights, str(tmp_path / "out"))
    run_distributed(_embed_in_each_process, tmp_path, *args)
    for rank in range(2):
        saved = torch.load(tmp_path / f"out.rank{rank}")
        torch.testing.assert_close(saved["features"][0], features, rtol=1e-4, atol=1e-4)
        assert torch.equal(saved["features"][1], labels)
        for key in PROBE_KEYS:
            assert saved["results"][key] == pytest.approx(single[key])
        # each process decoded only its half of the images (5 box images + 6 folder images)
        assert saved["cached"] == (3 + 3 if rank == 0 else 2 + 3)
        # the classifiers ran once, in the main process: 1 image kNN + 2 readouts x (kNN + linear)
        assert saved["classifier_calls"] == (5 if rank == 0 else 0)
