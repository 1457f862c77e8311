"""tools/benchmark_transfer.py on a tiny dataset: 2 inits x 2 seeds of real tools/train_net.py processes under
one protocol (the same frozen parts for every init), the report (mean / std / 95 % interval per init against
the per-run values, frozen parts, trainable parameters), resuming, stale runs, and bad input caught before any
training."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import subprocess

import numpy as np
import pytest
import torch
from scripts_testing import load_script
from transfer_testing import CONFIGS, REPO, TINY_FINETUNE, soco_fpn_checkpoint, write_tiny_coco_dataset

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle
from soco.detection import benchmark
from soco.detection.benchmark import RESULT_FILE, SETTINGS_FILE, counted_evaluation, parse_weights
from soco.detection.benchmark_report import (
    plot_png,
    results_document,
    results_markdown,
    seed_statistics,
    t_quantile_975,
)
from soco.detection.trainer import PARAMETERS_FILE
from soco.utils.metrics_file import read_metrics
from soco_proposals.fileio import sha256_of

benchmark_transfer = load_script("tools/benchmark_transfer.py")

CONFIG = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml")
# The tiny fine-tuning without its SEED (the benchmark sets it per run), two iterations, a checkpoint each.
OPTS = [*TINY_FINETUNE[: TINY_FINETUNE.index("SEED")], *TINY_FINETUNE[TINY_FINETUNE.index("SEED") + 2 :]]
OPTS += ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.PRECISE_BN.NUM_ITER", "1"]
OPTS += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # detections (and finite AP) after 2 iterations
OPTS += ["MODEL.FREEZE_CALIBRATION_ITERS", "1"]
OPTS += ["DATASETS.TRAIN", "('bench_train',)", "DATASETS.TEST", "('bench_val',)"]
# The fixture's protocol: backbone and FPN frozen for both inits, only the backbone of the file loaded
# (soco: a random FPN frozen, as for scratch, whose backbone is random too).
PROTOCOL = ["--freeze", "backbone,fpn", "--backbone-only"]


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


def _in_subprocesses(patch: pytest.MonkeyPatch) -> None:
    """The train_net processes: one OpenMP thread, soco importable."""
    patch.setenv("OMP_NUM_THREADS", "1")
    patch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    """A finished 2 x 2 benchmark under :data:`PROTOCOL`."""
    output_dir = tmp_path_factory.mktemp("bench") / "out"
    with pytest.MonkeyPatch.context() as patch:
        _in_subprocesses(patch)
        document = benchmark_transfer.main(_argv(inputs, output_dir, frozen=PROTOCOL))
    return output_dir, document


def test_every_init_and_seed_is_a_seeded_train_net_run_and_the_report_summarizes_them(finished):
    output_dir, document = finished
    on_disk = json.loads((output_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(document))
    assert on_disk["seeds"] == [0, 1] and on_disk["config_file"] == CONFIG
    assert (
        on_disk["frozen"] is True
        and on_disk["freeze_parts"] == ["backbone", "fpn"]
        and on_disk["backbone_only"]
    )
    runs = on_disk["runs"]
    assert [(r["init"], r["seed"]) for r in runs] == [(i, s) for i in ("soco", "scratch") for s in (0, 1)]
    for run in runs:
        folder = output_dir / run["init"] / f"seed{run['seed']}"
        assert run["output_dir"] == str(folder) and json.loads((folder / RESULT_FILE).read_text()) == run
        assert f"SEED: {run['seed']}" in (folder / "config.yaml").read_text()
        final = read_metrics(folder / "metrics.json")[-1]
        assert run["bbox/AP"] == final["bbox/AP"] and run["segm/AP50"] == final["segm/AP50"]
        assert run["produced_predictions"] is True and run["resumed"] is False
        parameters = json.loads((folder / PARAMETERS_FILE).read_text())
        assert run["trainable_parameters"] == parameters["trainable_parameters"] > 0
        assert run["frozen_parts"] == parameters["frozen_parts"] == ["backbone", "fpn"]
    assert {r["trainable_parameters"] for r in runs} == {runs[0]["trainable_parameters"]}, "one protocol"
    assert [r["random_parts"] for r in runs[::2]] == [["fpn"], ["backbone", "fpn"]]
    settings = json.loads((output_dir / "scratch" / "seed1" / SETTINGS_FILE).read_text())
    assert (
        settings["freeze_parts"] == ["backbone", "fpn"]
        and settings["weights"] == ""
        and settings["seed"] == 1
    )
    soco_settings = json.loads((output_dir / "soco" / "seed1" / SETTINGS_FILE).read_text())
    assert soco_settings["weights_sha256"] == sha256_of(soco_settings["weights"])
    assert "Reading a file from 'soco'" in (output_dir / "soco" / "seed1" / "log.txt").read_text()

    # the frozen random FPN is the seed's init in both rows; BN statistics calibrated, not mean 0 / var 1
    soco, scratch = (
        torch.load(output_dir / init / "seed0" / "model_final.pth", map_location="cpu")["model"]
        for init in ("soco", "scratch")
    )
    fpn_conv = "backbone.fpn_output3.weight"
    assert torch.equal(soco[fpn_conv], scratch[fpn_conv])
    backbone_var = scratch["backbone.bottom_up.res3.0.conv1.norm.running_var"]
    assert not torch.allclose(backbone_var, torch.ones_like(backbone_var)), "the scratch backbone's BN"
    assert (
        "BN statistics of ['backbone', 'fpn'] (not in MODEL.WEIGHTS) calibrated"
        in (output_dir / "scratch" / "seed0" / "log.txt").read_text()
    )

    for init, summary in on_disk["summary"].items():
        assert summary["n_runs"] == summary["n_with_predictions"] == 2 and summary["n_resumed"] == 0
        assert summary["frozen_parts"] == ["backbone", "fpn"]
        for metric in ("bbox/AP", "bbox/AP50", "segm/AP"):
            values = [r[metric] for r in runs if r["init"] == init]
            stats = summary[metric]
            assert stats["n"] == 2
            assert stats["mean"] == pytest.approx(statistics.mean(values))
            assert stats["std"] == pytest.approx(statistics.stdev(values))  # sample std, n - 1
            half = 12.706 * statistics.stdev(values) / math.sqrt(2)  # t(0.975, df 1)
            assert stats["ci95"] == pytest.approx([stats["mean"] - half, stats["mean"] + half])
    table = (output_dir / "results.md").read_text()
    soco_row = next(line for line in table.splitlines() if line.startswith("| soco |"))
    soco = on_disk["summary"]["soco"]
    box = soco["bbox/AP"]
    assert f"{box['mean']:.1f} ± {box['std']:.1f} [{box['ci95'][0]:.1f}, {box['ci95'][1]:.1f}]" in soco_row
    assert f"| soco | backbone, fpn (fpn at random init) | {soco['trainable_parameters']:,} | 2 |" in soco_row
    assert ", ".join(f"{r['bbox/AP']:.1f}" for r in runs[:2]) in soco_row
    assert (
        "| init | frozen | trainable parameters | runs | bbox/AP | bbox/AP50 | segm/AP | segm/AP50 |" in table
    )
    assert "Held equal across rows: config mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml" in table
    assert "MODEL.FREEZE_PARTS ['backbone', 'fpn'] for every row" in table and "the backbone of each" in table
    assert (output_dir / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_skips_finished_runs_and_resumes_a_killed_one(finished, inputs, monkeypatch, caplog):
    output_dir, document = finished
    _in_subprocesses(monkeypatch)
    killed = output_dir / "soco" / "seed1"
    (killed / RESULT_FILE).unlink()  # killed after its first checkpoint: iteration 0 done, no result
    (killed / "last_checkpoint").write_text("model_0000000.pth")
    argv = _argv(inputs, output_dir, frozen=PROTOCOL)
    with caplog.at_level(logging.INFO, logger="soco.detection.benchmark"):
        again = benchmark_transfer.main(argv)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("finished earlier" in m and "skipped" in m for m in messages) == 3
    (resumed,) = [m for m in messages if m.startswith("soco seed 1: resuming: ")]
    assert " --resume " in resumed and f"OUTPUT_DIR {killed}" in resumed and "SEED 1" in resumed
    assert "Starting training from iteration 1" in (killed / "log.txt").read_text()
    assert json.loads((killed / RESULT_FILE).read_text())["resumed"] is True
    assert again["runs"][0] == document["runs"][0] and again["runs"][2:] == document["runs"][2:]
    assert again["summary"]["soco"]["n_resumed"] == 1 and "2, 1 resumed" in results_markdown(again)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished benchmark runs nothing")

    monkeypatch.setattr(subprocess, "run", no_training)
    assert benchmark_transfer.main(argv)["summary"] == again["summary"]
    with pytest.raises(ValueError, match="was started with other settings"):
        benchmark_transfer.main(
            _argv(inputs, output_dir, opts=[*OPTS, "SOLVER.BASE_LR", "0.01"], frozen=PROTOCOL)
        )


def test_a_run_of_other_weights_content_is_discarded_and_run_again(finished, inputs, monkeypatch, caplog):
    """Same path, new content (re-pretrained into the same folder): the old run is not reported; nor is a run
    whose content was never recorded (a folder of an older benchmark)."""
    output_dir, _ = finished
    stale = output_dir / "soco" / "seed0"
    settings = json.loads((stale / SETTINGS_FILE).read_text())
    (stale / SETTINGS_FILE).write_text(json.dumps({**settings, "weights_sha256": "0" * 64}))
    legacy = output_dir / "scratch" / "seed1" / SETTINGS_FILE
    old_keys = ("config_file", "weights", "seed", "freeze_parts", "opts", "register_coco")
    legacy.write_text(json.dumps({key: json.loads(legacy.read_text())[key] for key in old_keys}))
    executed = []

    def execute(run, spec_, train_net=None):
        assert not run.output_dir.exists(), "the stale folder is gone before the run starts again"
        executed.append((run.init, run.seed))
        other_seed = output_dir / run.init / f"seed{1 - run.seed}" / RESULT_FILE
        return json.loads(other_seed.read_text()) | {"seed": run.seed}

    monkeypatch.setattr(benchmark, "execute_run", execute)
    with caplog.at_level(logging.INFO, logger="soco.detection.benchmark"):
        benchmark_transfer.main(_argv(inputs, output_dir, frozen=PROTOCOL))
    assert executed == [("soco", 0), ("scratch", 1)]
    lines = [r.getMessage() for r in caplog.records if "discarding that run" in r.getMessage()]
    assert f"{stale} was started from weights of sha256 {'0' * 64}, {settings['weights']} now" in lines[0]
    assert lines[0].startswith("soco seed 0:") and settings["weights_sha256"] in lines[0]
    assert "sha256 not recorded, random init now has no file" in lines[1]


def test_bad_input_stops_before_any_training(inputs, tmp_path, monkeypatch, capsys):
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

    headless = tmp_path / "no_backbone.pkl"
    head = {k: v for k, v in inputs["converted"].items() if not k.startswith(("stem.", "res"))}
    save_pickle(detectron2_payload(head), str(headless))
    refused = re.escape(f"--weights fpn={headless}: none of its ") + ".* is a backbone one"
    with pytest.raises(ValueError, match=refused):
        benchmark_transfer.main(_argv(inputs, out, "--weights", f"fpn={headless}"))

    with pytest.raises(ValueError, match="the name 'soco' is given twice"):
        benchmark_transfer.main(_argv(inputs, out, "--weights", good, "--weights", "soco="))
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        benchmark_transfer.main(_argv(inputs, out, seeds="0"))
    with pytest.raises(ValueError, match=r"\['SEED'\]: the benchmark sets"):
        benchmark_transfer.main(_argv(inputs, out, opts=[*OPTS, "SEED", "3"]))
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        parse_weights(["soco"])
    assert parse_weights(["a=x.pkl", "scratch="]) == {"a": "x.pkl", "scratch": ""}
    no_calibration = [*OPTS, "MODEL.FREEZE_CALIBRATION_ITERS", "0"]
    with pytest.raises(
        ValueError, match=r"freezes \['backbone'\], which MODEL.WEIGHTS \(empty: random init\)"
    ):
        benchmark_transfer.main(_argv(inputs, out, opts=no_calibration, frozen=["--freeze", "backbone"]))
    with pytest.raises(ValueError, match="--num-gpus 0 runs on the CPU .* MODEL.DEVICE cuda"):
        benchmark_transfer.main(
            _argv(inputs, out, opts=[*OPTS, "MODEL.DEVICE", "cuda"], frozen=["--num-gpus", "0"])
        )
    for flags, message in (
        (["--frozen"], "--frozen was replaced by --freeze PARTS"),
        (["--freeze", "backbone,neck"], r"--freeze 'backbone,neck': expected a comma-separated .*'neck'"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            benchmark_transfer.main(_argv(inputs, out, frozen=flags))
        assert re.search(message, capsys.readouterr().err), message
    assert not out.exists()


def _plan(inputs, tmp_path, *weights, config=CONFIG, opts=OPTS, flags=("--freeze", "backbone,fpn,box_head")):
    argv = _argv(inputs, tmp_path / "out", *weights, seeds="1", opts=opts, frozen=list(flags))
    argv[argv.index(CONFIG)] = config
    spec_ = benchmark.spec_from_args(benchmark_transfer.build_argument_parser().parse_args(argv))
    return spec_, {run.init: run for run in benchmark.plan_runs(spec_)}


def test_freeze_is_one_protocol_for_every_init(inputs, tmp_path):
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
    spec_, runs = _plan(inputs, tmp_path, *inits)
    assert {run.freeze_parts for run in runs.values()} == {("backbone", "fpn", "box_head")}, (
        "the same for all"
    )
    assert runs["soco"].random_parts == ()
    assert runs["moco"].random_parts == ("fpn", "box_head")
    assert runs["scratch"].random_parts == ("backbone", "fpn", "box_head")
    command = runs["moco"].command(spec_, benchmark.TRAIN_NET, resume=False)
    assert command[command.index("MODEL.FREEZE_PARTS") + 1] == "['backbone', 'fpn', 'box_head']"
    assert command[command.index("MODEL.WEIGHTS") + 1] == str(backbone_only.resolve())
    assert command[command.index("SEED") + 1] == "0" and command[command.index("OUTPUT_DIR") + 1] == str(
        (tmp_path / "out" / "moco" / "seed0").resolve()
    )
    assert (
        runs["moco"].weights_sha256
        == sha256_of(str(backbone_only))
        != runs["soco"].weights_sha256
    )

    _, runs = _plan(inputs, tmp_path, *inits, flags=["--freeze", "backbone,fpn", "--backbone-only"])
    assert runs["soco"].random_parts == runs["moco"].random_parts == ("fpn",)
    assert runs["soco"].loaded_weights.endswith(f"soco/backbone_{runs['soco'].weights_sha256[:16]}.pkl")
    assert runs["scratch"].loaded_weights == ""

    c4_opts = [*OPTS[: OPTS.index("DATASETS.TRAIN")], "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32, 64, 128]]"]
    c4_config = str(CONFIGS / "coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml")
    _, c4_runs = _plan(
        inputs, tmp_path, *inits, config=c4_config, opts=c4_opts, flags=["--freeze", "backbone"]
    )
    assert {run.freeze_parts for run in c4_runs.values()} == {("backbone",)}
    with pytest.raises(ValueError, match="--freeze fpn: MODEL.FREEZE_PARTS: this model has no 'fpn'"):
        _plan(inputs, tmp_path, *inits, config=c4_config, opts=c4_opts, flags=["--freeze", "fpn"])

    spec_, runs = _plan(inputs, tmp_path, flags=["--num-gpus", "0"])
    command = runs["soco"].command(spec_, benchmark.TRAIN_NET, resume=False)
    assert command[command.index("MODEL.DEVICE") + 1] == "cpu" and command.index(
        "MODEL.DEVICE"
    ) > command.index(OPTS[0]), "--num-gpus 0 runs on the CPU, whatever the config file says"


def test_full_mode_command_has_no_frozen_parts(inputs, tmp_path):
    spec_, runs = _plan(inputs, tmp_path, "--weights", f"soco={inputs['weights']}", flags=())
    command = runs["soco"].command(spec_, benchmark.TRAIN_NET, resume=False)
    assert (
        runs["soco"].freeze_parts == () and "MODEL.FREEZE_PARTS" not in command and "--resume" not in command
    )
    assert command[command.index("MODEL.WEIGHTS") + 1] == str(inputs["weights"].resolve())
    assert "MODEL.DEVICE" not in command[command.index("SEED") - 2 :], "--num-gpus 1: the config's device"


def test_a_run_without_predictions_counts_as_zero_and_is_flagged():
    evaluation = {"iteration": 1, "bbox/AP": None, "bbox/AP50": None, "segm/AP": None}
    assert counted_evaluation(evaluation) == {
        "iteration": 1, "bbox/AP": 0.0, "bbox/AP50": 0.0, "segm/AP": 0.0, "produced_predictions": False
    }  # fmt: skip
    with_predictions = {"iteration": 1, "bbox/AP": 2.0, "bbox/APs": None}
    assert counted_evaluation(with_predictions) == {**with_predictions, "produced_predictions": True}
    protocol = {"frozen_parts": [], "random_parts": [], "trainable_parameters": 1000, "resumed": False}
    evaluations = [
        counted_evaluation({"bbox/AP": 10.0, "bbox/AP50": 20.0}),
        counted_evaluation({"bbox/AP": 14.0, "bbox/AP50": 24.0}),
        counted_evaluation({"bbox/AP": None, "bbox/AP50": None}),
    ]
    runs = [{"init": "a", "seed": k, "output_dir": str(k)} | e | protocol for k, e in enumerate(evaluations)]
    document = results_document("faster_rcnn.yaml", [], runs)
    row = document["summary"]["a"]
    assert row["n_runs"] == 3 and row["n_with_predictions"] == 2 and row["trainable_parameters"] == 1000
    assert row["bbox/AP"]["mean"] == pytest.approx(8.0) and row["bbox/AP"]["n"] == 3, "0 counted, not dropped"
    table = results_markdown(document)
    assert "| a | nothing | 1,000 | 3 (2/3 produced predictions; 1 counted as 0) | 8.0 ± 7.2 [" in table
    assert "10.0, 14.0, 0.0† |" in table and "segm" not in table, "no mask head"
    assert plot_png(document)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="a: its runs differ in 'trainable_parameters'"):
        results_document("f.yaml", [], [runs[0], runs[1] | {"trainable_parameters": 5}])


def test_summary_has_a_student_t_interval_and_no_std_for_one_value():
    stats = seed_statistics(
        [1.0, None, 3.0]
    )  # None: a metric undefined for that run (APs without small objects)
    assert stats == {
        "mean": 2.0,
        "std": pytest.approx(2**0.5),
        "n": 2,
        "ci95": pytest.approx([2 - 12.706, 2 + 12.706]),
    }
    assert seed_statistics([5.0]) == {"mean": 5.0, "std": None, "n": 1, "ci95": None}
    assert seed_statistics([None]) == {"mean": None, "std": None, "n": 0, "ci95": None}
    assert [t_quantile_975(df) for df in (2, 4, 30)] == [4.303, 2.776, 2.042]
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3) and t_quantile_975(10**6) == pytest.approx(
        1.96, abs=1e-3
    )
