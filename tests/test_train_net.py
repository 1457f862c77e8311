"""tools/train_net.py end to end: fine-tune, evaluate and resume on a tiny COCO-format dataset; the
bundled LVIS and VOC configs on tiny builtin-layout datasets, scored by Detectron2's real evaluators."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from scripts_testing import load_script
from transfer_testing import (
    CONFIGS,
    REPO,
    TINY_FINETUNE,
    soco_c4_checkpoint,
    soco_fpn_checkpoint,
    write_tiny_coco_dataset,
    write_tiny_lvis_dataset,
    write_tiny_voc_dataset,
)

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle
from soco.utils.metrics_file import read_metrics

train_net = load_script("tools/train_net.py")

CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_coco_dataset(tmp_path_factory.mktemp("shapes"))


def _converted(checkpoint: dict, folder) -> str:
    weights, _ = convert_checkpoint(checkpoint)
    path = folder / "model_final_d2.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    return path


@pytest.fixture(scope="module")
def soco_weights(tmp_path_factory):
    return _converted(soco_fpn_checkpoint(randomize=False), tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def soco_c4_weights(tmp_path_factory):
    return _converted(soco_c4_checkpoint(randomize=False), tmp_path_factory.mktemp("weights_c4"))


def _args(dataset, output_dir, *extra, flags=()):
    json_file, images = map(str, dataset)
    argv = [
        "--config-file", CONFIG,
        "--register-coco", "tiny_shapes_train", json_file, images,
        "--register-coco", "tiny_shapes_val", json_file, images,
        *flags,
        *TINY_FINETUNE,
        "DATASETS.TRAIN", "('tiny_shapes_train',)",
        "DATASETS.TEST", "('tiny_shapes_val',)",
        "OUTPUT_DIR", str(output_dir),
        *extra,
    ]  # fmt: skip
    return train_net.build_argument_parser().parse_args(argv)


def _finite_ap(results: dict) -> bool:
    return all(math.isfinite(results[task]["AP"]) for task in ("bbox", "segm"))


def test_fine_tune_evaluate_and_resume(dataset, soco_weights, tmp_path):
    out = tmp_path / "run"
    train_net.main(_args(dataset, out, "MODEL.WEIGHTS", str(soco_weights), "SOLVER.MAX_ITER", "3"))
    records = read_metrics(out / "metrics.json")
    final = records[-1]
    assert math.isfinite(final["bbox/AP"]) and math.isfinite(final["segm/AP"]), final
    assert (out / "model_final.pth").is_file()
    assert (out / "inference" / "coco_instances_results.json").is_file()
    log = (out / "log.txt").read_text()
    assert "Reading a file from 'soco'" in log, "fine-tuning starts from the converted SoCo weights"
    assert "Running precise-BN for 2 iterations" in log

    results = train_net.main(
        _args(dataset, out, "MODEL.WEIGHTS", str(out / "model_final.pth"), flags=["--eval-only"])
    )
    assert _finite_ap(results), results

    train_net.main(_args(dataset, out, "SOLVER.MAX_ITER", "4", flags=["--resume"]))
    records = read_metrics(out / "metrics.json")
    train_iters = [r["iteration"] for r in records if "total_loss" in r]
    assert train_iters[-1] == 3 and train_iters == sorted(set(train_iters)), "resume restarted from 0"
    assert records[-1]["iteration"] == 4 and math.isfinite(records[-1]["segm/AP"])


def test_wrong_num_classes_is_caught_before_training(dataset, tmp_path):
    args = _args(dataset, tmp_path / "bad", "MODEL.ROI_HEADS.NUM_CLASSES", "5")
    with pytest.raises(ValueError, match="has 2 categories but MODEL.ROI_HEADS.NUM_CLASSES is 5"):
        train_net.main(args)


def _fine_tune_on_builtin_dataset(config: str, datasets_root, weights, output_dir, *extra):
    """Two iterations of ``tools/train_net.py`` on a bundled config, then its evaluation, in a
    subprocess: Detectron2 registers its builtin datasets from ``$DETECTRON2_DATASETS`` when
    ``detectron2.data`` is first imported. Returns (last metrics.json record: dict, log.txt: str)."""
    command = [
        sys.executable, str(REPO / "tools" / "train_net.py"),
        "--config-file", str(CONFIGS / config),
        *TINY_FINETUNE,
        "SOLVER.MAX_ITER", "2",
        "MODEL.WEIGHTS", str(weights),
        "OUTPUT_DIR", str(output_dir),
        *extra,
    ]  # fmt: skip
    env = {
        **os.environ,
        "DETECTRON2_DATASETS": str(datasets_root),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    final = read_metrics(output_dir / "metrics.json")[-1]
    return final, (output_dir / "log.txt").read_text()


def _assert_finite_ap(final: dict, tasks: tuple[str, ...]) -> None:
    for task in tasks:
        for metric in ("AP", "AP50", "AP75"):
            value = final[f"{task}/{metric}"]
            assert math.isfinite(value) and 0 <= value <= 100, (task, metric, final)


def test_lvis_config_fine_tunes_and_is_scored_by_the_lvis_evaluator(soco_weights, tmp_path):
    root = write_tiny_lvis_dataset(tmp_path / "datasets")
    out = tmp_path / "run"
    final, log = _fine_tune_on_builtin_dataset(
        "lvis/mask_rcnn_R_50_FPN_1x_soco_fpn_star_400ep.yaml", root, soco_weights, out,
        "MODEL.ROI_HEADS.NUM_CLASSES", "1203",
    )  # fmt: skip
    assert final["iteration"] == 2
    _assert_finite_ap(final, ("bbox", "segm"))
    assert {"bbox/APr", "bbox/APc", "bbox/APf", "segm/APf"} <= final.keys(), "LVIS's frequency groups"
    assert f"Loaded 6 images in the LVIS format from {root}/lvis/lvis_v1_train.json" in log
    assert "Using training sampler RepeatFactorTrainingSampler" in log
    assert "Reading a file from 'soco'" in log
    assert "Evaluating with max detections per image = 300" in log, "Detectron2's LVISEvaluator ran"
    detections = json.loads((out / "inference" / "lvis_instances_results.json").read_text())
    assert detections and {d["image_id"] for d in detections} <= set(range(1, 7))
    assert all(1 <= d["category_id"] <= 1203 and "segmentation" in d for d in detections)


def test_voc_config_fine_tunes_and_is_scored_by_the_voc_evaluator(soco_c4_weights, tmp_path):
    root = write_tiny_voc_dataset(tmp_path / "datasets")
    final, log = _fine_tune_on_builtin_dataset(
        "voc/faster_rcnn_R_50_C4_24k_soco_c4_400ep.yaml", root, soco_c4_weights, tmp_path / "run",
        "MODEL.ROI_HEADS.NUM_CLASSES", "20",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32, 64, 128]]",  # C4: one feature map, one list of sizes
    )  # fmt: skip
    assert final["iteration"] == 2
    _assert_finite_ap(final, ("bbox",))
    assert "Reading a file from 'soco'" in log
    assert "Evaluating voc_2007_test using 2007 metric" in log, "Detectron2's PascalVOCDetectionEvaluator ran"


def test_the_seed_makes_two_fine_tunes_equal(dataset, soco_weights, tmp_path):
    """Same SEED: equal weights and AP tensor for tensor (data order, augmentation, two loader workers,
    initialisation of the new layers, precise BN); another SEED: other weights."""

    def fine_tune(name: str, seed: int) -> tuple[dict, dict]:
        out = tmp_path / name
        extra = ["MODEL.WEIGHTS", str(soco_weights), "SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "2"]
        train_net.main(_args(dataset, out, *extra, "SEED", str(seed)))
        final = read_metrics(out / "metrics.json")[-1]
        return torch.load(out / "model_final.pth", map_location="cpu")["model"], final

    first, first_metrics = fine_tune("a", 7)
    second, second_metrics = fine_tune("b", 7)
    other, _ = fine_tune("c", 8)
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    evaluation = [
        json.dumps({k: v for k, v in m.items() if "/" in k}) for m in (first_metrics, second_metrics)
    ]
    assert "bbox/AP" in evaluation[0] and evaluation[0] == evaluation[1]  # as text: NaN equals NaN
    differ = [key for key in first if not torch.equal(first[key], other[key])]
    assert any(key.startswith("roi_heads.box_predictor.") for key in differ), (
        "new layers initialised per seed"
    )
