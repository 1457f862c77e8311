"""tools/train_net.py end to end on a tiny COCO-format dataset: fine-tune, evaluate, resume."""

import importlib.util
import json
import math

import pytest
from transfer_testing import (
    CONFIGS,
    REPO,
    TINY_FINETUNE,
    soco_fpn_checkpoint,
    write_tiny_coco_dataset,
)

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle

spec = importlib.util.spec_from_file_location("train_net", REPO / "tools" / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_coco_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def soco_weights(tmp_path_factory):
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    path = tmp_path_factory.mktemp("weights") / "model_final_d2.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    return path


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
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
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
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train_iters = [r["iteration"] for r in records if "total_loss" in r]
    assert train_iters[-1] == 3 and train_iters == sorted(set(train_iters)), "resume restarted from 0"
    assert records[-1]["iteration"] == 4 and math.isfinite(records[-1]["segm/AP"])


def test_wrong_num_classes_is_caught_before_training(dataset, tmp_path):
    args = _args(dataset, tmp_path / "bad", "MODEL.ROI_HEADS.NUM_CLASSES", "5")
    with pytest.raises(ValueError, match="has 2 categories but MODEL.ROI_HEADS.NUM_CLASSES is 5"):
        train_net.main(args)
