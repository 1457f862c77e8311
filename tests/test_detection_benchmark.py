"""tools/benchmark_transfer.py on a tiny dataset: 2 inits x 2 seeds of real tools/train_net.py processes,
the report (mean / std per init against the per-run values), resuming, and bad input caught before any
training."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import statistics
import subprocess

import numpy as np
import pytest
from transfer_testing import CONFIGS, REPO, TINY_FINETUNE, soco_fpn_checkpoint, write_tiny_coco_dataset

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle
from soco.detection import benchmark
from soco.detection.benchmark import RESULT_FILE, SETTINGS_FILE, parse_weights
from soco.detection.benchmark_report import plot_png, results_document, results_markdown, seed_statistics

spec = importlib.util.spec_from_file_location("benchmark_transfer", REPO / "tools" / "benchmark_transfer.py")
benchmark_transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_transfer)

CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")
# The tiny fine-tuning without its SEED (the benchmark sets it per run), two iterations, a checkpoint each.
OPTS = [*TINY_FINETUNE[: TINY_FINETUNE.index("SEED")], *TINY_FINETUNE[TINY_FINETUNE.index("SEED") + 2 :]]
OPTS += ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.PRECISE_BN.NUM_ITER", "1"]
OPTS += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # detections (and finite AP) after 2 iterations
OPTS += ["DATASETS.TRAIN", "('bench_train',)", "DATASETS.TEST", "('bench_val',)"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_inputs")
    json_file, images = map(str, write_tiny_coco_dataset(folder / "shapes", num_images=4))
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    save_pickle(detectron2_payload(weights), str(folder / "soco.pkl"))
    datasets = ["--register-coco", "bench_train", json_file, images]
    datasets += ["--register-coco", "bench_val", json_file, images]
    return {"weights": folder / "soco.pkl", "datasets": datasets, "converted": weights, "folder": folder}


def _argv(inputs, output_dir, *weights, seeds="2", opts=OPTS, frozen=()):
    weights = weights or ("--weights", f"soco={inputs['weights']}", "--weights", "scratch=")
    return [
        "--config-file", CONFIG, *weights, "--seeds", seeds, *frozen, *inputs["datasets"],
        str(output_dir), *opts,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    """A finished 2 x 2 benchmark (the train_net processes: one OpenMP thread, soco importable)."""
    output_dir = tmp_path_factory.mktemp("bench") / "out"
    env = {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        document = benchmark_transfer.main(_argv(inputs, output_dir))
    return output_dir, document


def test_every_init_and_seed_is_a_seeded_train_net_run_and_the_report_summarizes_them(finished):
    output_dir, document = finished
    on_disk = json.loads((output_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(document))
    assert on_disk["frozen"] is False and on_disk["seeds"] == [0, 1] and on_disk["config_file"] == CONFIG
    runs = on_disk["runs"]
    assert [(r["init"], r["seed"]) for r in runs] == [(i, s) for i in ("soco", "scratch") for s in (0, 1)]
    for run in runs:
        folder = output_dir / run["init"] / f"seed{run['seed']}"
        assert run["output_dir"] == str(folder) and json.loads((folder / RESULT_FILE).read_text()) == run
        assert f"SEED: {run['seed']}" in (folder / "config.yaml").read_text()
        final = json.loads((folder / "metrics.json").read_text().splitlines()[-1])
        assert run["bbox/AP"] == final["bbox/AP"] and run["segm/AP50"] == final["segm/AP50"]
    settings = json.loads((output_dir / "scratch" / "seed1" / SETTINGS_FILE).read_text())
    assert settings["freeze_parts"] == [] and settings["weights"] == "" and settings["seed"] == 1
    assert "Reading a file from 'soco'" in (output_dir / "soco" / "seed1" / "log.txt").read_text()

    for init, summary in on_disk["summary"].items():
        for metric in ("bbox/AP", "bbox/AP50", "segm/AP"):
            values = [r[metric] for r in runs if r["init"] == init]
            assert summary[metric]["n"] == 2
            assert summary[metric]["mean"] == pytest.approx(statistics.mean(values))
            assert summary[metric]["std"] == pytest.approx(statistics.stdev(values))  # sample std, n - 1
    table = (output_dir / "results.md").read_text()
    soco_row = next(line for line in table.splitlines() if line.startswith("| soco |"))
    soco = on_disk["summary"]["soco"]["bbox/AP"]
    assert f"{soco['mean']:.1f} ± {soco['std']:.1f}" in soco_row
    assert ", ".join(f"{r['bbox/AP']:.1f}" for r in runs[:2]) in soco_row
    assert "| init | n | bbox/AP | bbox/AP50 | segm/AP | segm/AP50 |" in table
    assert (output_dir / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_skips_finished_runs_and_resumes_a_killed_one(finished, inputs, monkeypatch, caplog):
    output_dir, document = finished
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    killed = output_dir / "soco" / "seed1"
    (killed / RESULT_FILE).unlink()  # killed after its first checkpoint: iteration 0 done, no result
    (killed / "last_checkpoint").write_text("model_0000000.pth")
    with caplog.at_level(logging.INFO, logger="soco.detection.benchmark"):
        again = benchmark_transfer.main(_argv(inputs, output_dir))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("finished earlier" in m and "skipped" in m for m in messages) == 3
    (resumed,) = [m for m in messages if m.startswith("soco seed 1: resuming: ")]
    assert " --resume " in resumed and f"OUTPUT_DIR {killed}" in resumed and "SEED 1" in resumed
    assert "Starting training from iteration 1" in (killed / "log.txt").read_text()
    assert (killed / RESULT_FILE).is_file()
    assert again["runs"][0] == document["runs"][0] and again["runs"][2:] == document["runs"][2:]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished benchmark runs nothing")

    monkeypatch.setattr(subprocess, "run", no_training)
    assert benchmark_transfer.main(_argv(inputs, output_dir))["summary"] == again["summary"]
    with pytest.raises(ValueError, match="was started with other settings"):
        benchmark_transfer.main(_argv(inputs, output_dir, opts=[*OPTS, "SOLVER.BASE_LR", "0.01"]))


def test_bad_input_stops_before_any_training(inputs, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("bad input must stop before training")

    monkeypatch.setattr(subprocess, "run", no_training)
    out = tmp_path / "out"
    good = f"soco={inputs['weights']}"
    missing = str(tmp_path / "nope.pkl")
    with pytest.raises(FileNotFoundError, match=f"--weights gone={missing}: the file does not exist"):
        benchmark_transfer.main(_argv(inputs, out, "--weights", good, "--weights", f"gone={missing}"))

    weights = dict(inputs["converted"])
    weights["res3.0.conv1.weight"] = np.zeros((3, 3, 1, 1), dtype=np.float32)
    wrong = tmp_path / "wrong.pkl"
    save_pickle(detectron2_payload(weights), str(wrong))
    fit = f"--weights wrong={wrong} does not fit the model of (.|\\n)*SHAPE MISMATCH res3.0.conv1"
    with pytest.raises(ValueError, match=fit):
        benchmark_transfer.main(_argv(inputs, out, "--weights", f"wrong={wrong}"))

    with pytest.raises(ValueError, match="the name 'soco' is given twice"):
        benchmark_transfer.main(_argv(inputs, out, "--weights", good, "--weights", "soco="))
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        benchmark_transfer.main(_argv(inputs, out, seeds="0"))
    with pytest.raises(ValueError, match=r"\['SEED'\]: the benchmark sets"):
        benchmark_transfer.main(_argv(inputs, out, opts=[*OPTS, "SEED", "3"]))
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        parse_weights(["soco"])
    assert parse_weights(["a=x.pkl", "scratch="]) == {"a": "x.pkl", "scratch": ""}
    assert not out.exists()


def test_frozen_mode_freezes_what_each_weights_file_holds(inputs, tmp_path):
    weights = dict(inputs["converted"])
    backbone_only = tmp_path / "backbone.pkl"
    save_pickle(
        detectron2_payload({k: v for k, v in weights.items() if k.startswith(("stem.", "res"))}),
        str(backbone_only),
    )
    inits = [
        "--weights",
        f"soco={inputs['weights']}",
        "--weights",
        f"moco={backbone_only}",
        "--weights",
        "scratch=",
    ]
    argv = _argv(inputs, tmp_path / "out", *inits, seeds="1", frozen=["--frozen"])
    spec_ = benchmark.spec_from_args(benchmark_transfer.build_argument_parser().parse_args(argv))
    runs = {run.init: run for run in benchmark.plan_runs(spec_)}
    assert runs["soco"].freeze_parts == ("backbone", "fpn", "box_head")
    assert runs["moco"].freeze_parts == ("backbone",)
    assert runs["scratch"].freeze_parts == ("backbone",), "random init: a frozen random backbone"
    c4_opts = [*OPTS[: OPTS.index("DATASETS.TRAIN")], "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32, 64, 128]]"]
    c4_config = str(CONFIGS / "coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml")
    c4 = benchmark.BenchmarkSpec(c4_config, spec_.weights, 1, tmp_path / "c4", frozen=True, opts=c4_opts)
    c4_parts = {run.init: run.freeze_parts for run in benchmark.plan_runs(c4)}
    assert c4_parts["soco"] == ("backbone",), "the FPN and box head of the weights are not in a C4 model"
    command = runs["soco"].command(spec_, benchmark.TRAIN_NET, resume=False)
    assert command[command.index("MODEL.FREEZE_PARTS") + 1] == "['backbone', 'fpn', 'box_head']"
    assert command[command.index("SEED") + 1] == "0" and command[command.index("OUTPUT_DIR") + 1] == str(
        (tmp_path / "out" / "soco" / "seed0").resolve()
    )


def test_full_mode_command_has_no_frozen_parts(inputs, tmp_path):
    args = benchmark_transfer.build_argument_parser().parse_args(
        ["--config-file", CONFIG, "--weights", f"soco={inputs['weights']}", "--seeds", "1",
         *inputs["datasets"], str(tmp_path / "out"), *OPTS]
    )  # fmt: skip
    spec_ = benchmark.spec_from_args(args)
    (run,) = benchmark.plan_runs(spec_)
    command = run.command(spec_, benchmark.TRAIN_NET, resume=False)
    assert run.freeze_parts == () and "MODEL.FREEZE_PARTS" not in command and "--resume" not in command
    assert command[command.index("MODEL.WEIGHTS") + 1] == str(inputs["weights"].resolve())


def test_summary_skips_unknown_values_and_has_no_std_for_one_value():
    assert seed_statistics([1.0, None, 3.0]) == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2}
    assert seed_statistics([5.0]) == {"mean": 5.0, "std": None, "n": 1}
    assert seed_statistics([None]) == {"mean": None, "std": None, "n": 0}
    runs = [
        {"init": "a", "seed": 0, "output_dir": "x", "bbox/AP": 10.0, "bbox/AP50": None},
        {"init": "a", "seed": 1, "output_dir": "y", "bbox/AP": 14.0, "bbox/AP50": 20.0},
    ]
    document = results_document("faster_rcnn.yaml", False, [], runs)
    assert document["summary"] == {
        "a": {
            "bbox/AP": {"mean": 12.0, "std": pytest.approx(8**0.5), "n": 2},
            "bbox/AP50": seed_statistics([20.0]),
        }
    }
    table = results_markdown(document)
    assert "| a | 2 | 12.0 ± 2.8 | 20.0 | 10.0, 14.0 |" in table and "segm" not in table, "no mask head"
    assert plot_png(document)[:4] == b"\x89PNG"
