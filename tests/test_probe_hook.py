"""The probe hook in real tiny pretraining runs: schedule, EventStorage, metrics.json, every method."""

import math
from pathlib import Path

import numpy as np
import pytest
from detectron2.utils.events import EventStorage, JSONWriter
from pretrain_testing import run_pretraining, write_tiny_corpus
from probes_testing import register_probe_box_sets, write_probe_image_folder
from scripts_testing import load_script
from transfer_testing import write_tiny_coco_dataset

from soco.engine import probe_hook
from soco.engine.pretrain import run_pretraining as pretrain_main
from soco.engine.probe_hook import ProbeHook, probe_iterations
from soco.evaluation import (
    PROBE_KEYS,
    C4ProbeEncoder,
    FPNProbeEncoder,
    model_weights,
    probe_rows,
    random_init_weights,
)
from soco.evaluation.plot import plot_probe_curves, read_probe_curves
from soco.utils.metrics_file import read_metrics

REPO = Path(__file__).resolve().parents[1]


def test_probe_iterations_are_the_start_every_period_and_the_end():
    assert probe_iterations(4, 10) == [0, 4, 8, 10]
    assert probe_iterations(5, 10) == [0, 5, 10]
    assert probe_iterations(3, 10, start_iter=6) == [9, 10]  # resumed: no second initial row


class _Trainer:
    def __init__(self, max_iter):
        self.model, self.iter, self.max_iter = None, 0, max_iter


def test_hook_puts_results_at_the_number_of_finished_steps():
    calls = []

    def evaluate(model):
        calls.append(model)
        return {"probe/x": len(calls), "probe/seconds": 0.1}

    hook = ProbeHook(evaluate, period=3, max_iter=7)
    hook.trainer = _Trainer(7)
    with EventStorage(0) as storage:
        hook.trainer.storage = storage
        hook.before_train()
        for it in range(7):
            hook.trainer.iter = storage.iter = it
            hook.after_step()
    assert [it for _, it in storage.history("probe/x").values()] == [0, 3, 6, 7] == probe_iterations(3, 7)
    assert [v for v, _ in storage.history("probe/x").values()] == [1, 2, 3, 4]


def test_a_failed_probe_reaches_metrics_json_and_the_plot_as_nan_never_a_number(tmp_path):
    def evaluate(model):
        return {"probe/object_knn": math.nan, "probe/image_knn": 40.0, "probe/seconds": 0.1}

    writer = JSONWriter(str(tmp_path / "metrics.json"))
    hook = ProbeHook(evaluate, period=2, max_iter=2, writers=[writer])
    hook.trainer = _Trainer(2)
    with EventStorage(0) as storage:
        hook.trainer.storage = storage
        hook.before_train()
        writer.write()
    writer.close()
    (row,) = read_metrics(tmp_path / "metrics.json")
    assert math.isnan(row["probe/object_knn"]) and row["probe/image_knn"] == 40.0
    assert '"probe/object_knn": NaN' in (tmp_path / "metrics.json").read_text()
    curves = read_probe_curves(str(tmp_path / "metrics.json"))
    assert math.isnan(curves["probe/object_knn"][0][1])
    plot_probe_curves(curves, str(tmp_path / "probes.png"))
    assert (tmp_path / "probes.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    train, test = register_probe_box_sets(root, "hook_boxes")
    return [
        "PRETRAIN.PROBES.IMAGE_ROOT", str(write_probe_image_folder(root / "folder")),
        "PRETRAIN.PROBES.BOX_TRAIN", train, "PRETRAIN.PROBES.BOX_TEST", test,
        "PRETRAIN.PROBES.MIN_SIZE_TEST", "64", "PRETRAIN.PROBES.MAX_SIZE_TEST", "128",
        "PRETRAIN.PROBES.IMAGE_SIZE", "32", "PRETRAIN.PROBES.LINEAR_STEPS", "20",
    ]  # fmt: skip


def _probe_hook(trainer) -> ProbeHook:
    (hook,) = [h for h in trainer._hooks if isinstance(h, ProbeHook)]
    return hook


def _probe_encoder(trainer):
    return _probe_hook(trainer).evaluate.evaluator.encoder


@pytest.mark.parametrize(
    ("config", "corpus_keys", "log_period", "encoder"),
    [("SoCo_FPN.yaml", 4, 20, FPNProbeEncoder), ("MoCoV2.yaml", 2, 1, C4ProbeEncoder)],
)
def test_probes_reach_metrics_json_at_init_every_period_and_the_end(
    tmp_path, probe_data, config, corpus_keys, log_period, encoder, monkeypatch
):
    probed = []  # the converted weights the hook probes, in order

    def recorded_weights(model):
        weights = model_weights(model)
        probed.append(weights)  # copies: they keep the values the hook probed while training goes on
        return weights

    monkeypatch.setattr(probe_hook, "model_weights", recorded_weights)
    corpus = write_tiny_corpus(tmp_path / "corpus")[:corpus_keys]
    overrides = corpus + probe_data + [
        "SOLVER.MAX_ITER", "5", "SOLVER.LOG_PERIOD", str(log_period), "PRETRAIN.EVAL_PERIOD", "2",
    ]  # fmt: skip
    trainer, recorded = run_pretraining(f"soco/configs/tiny/{config}", tmp_path / "out", overrides)
    history = trainer.storage.history("probe/object_knn").values()
    assert [it for _, it in history] == [0, 2, 4, 5]
    metrics = read_metrics(tmp_path / "out" / "metrics.json")
    rows = {row["iteration"]: row for row in metrics if "probe/object_knn" in row}
    assert sorted(rows) == [0, 2, 4, 5]
    for row in rows.values():
        assert {*PROBE_KEYS, "probe/seconds"} <= row.keys()
        assert all(0 <= row[key] <= 100 for key in PROBE_KEYS) and row["probe/seconds"] > 0
    # evaluate_probes' random-init row of the config is iteration 0 of the run: the same weights (the model's
    # own initialisation, seeded with SEED) and the same accuracies
    initial, seed = random_init_weights(trainer.cfg)
    assert seed == trainer.cfg.SEED and initial.keys() == probed[0].keys()
    assert all(np.array_equal(initial[name], probed[0][name]) for name in initial)
    evaluator = _probe_hook(trainer).evaluate.evaluator
    stride_in_1x1 = trainer.cfg.MODEL.RESNETS.STRIDE_IN_1X1
    (row,) = probe_rows([("init", config, initial)], evaluator.data, evaluator.settings, "cpu", stride_in_1x1)
    assert {key: row.results[key] for key in PROBE_KEYS} == {key: rows[0][key] for key in PROBE_KEYS}
    # the probes' own flushes lose no step: with LOG_PERIOD 1 every step's loss reaches metrics.json
    losses = {row["iteration"] for row in metrics if "total_loss" in row}
    assert losses == set(range(5)) if log_period == 1 else 4 in losses
    assert sorted(recorded["total_loss"]) == list(range(5))
    assert type(_probe_encoder(trainer)) is encoder


@pytest.mark.parametrize(
    ("config", "corpus_keys", "encoder"),
    [
        ("SoCo_FPN_Star.yaml", 4, FPNProbeEncoder),
        ("SoCo_C4.yaml", 4, C4ProbeEncoder),
        ("SwAV.yaml", 2, C4ProbeEncoder),
        ("DenseCL.yaml", 2, C4ProbeEncoder),
    ],
)
def test_every_method_is_probed_with_its_detector_pooling(tmp_path, probe_data, config, corpus_keys, encoder):
    overrides = write_tiny_corpus(tmp_path / "corpus")[:corpus_keys] + probe_data
    overrides += ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "PRETRAIN.EVAL_PERIOD", "2"]
    trainer, _ = run_pretraining(f"soco/configs/tiny/{config}", tmp_path / "out", overrides)
    assert [it for _, it in trainer.storage.history("probe/image_knn").values()] == [0, 2]
    assert type(_probe_encoder(trainer)) is encoder


def test_eval_period_without_probe_data_is_an_error_naming_the_keys(tmp_path):
    overrides = write_tiny_corpus(tmp_path / "corpus")[:2] + ["PRETRAIN.EVAL_PERIOD", "2"]
    with pytest.raises(ValueError, match="PRETRAIN.PROBES.IMAGE_ROOT.*PRETRAIN.PROBES.BOX_TRAIN"):
        run_pretraining("soco/configs/tiny/MoCoV2.yaml", tmp_path / "out", overrides)


def test_pretrain_net_registers_the_probe_box_sets_of_register_coco(tmp_path):
    tool = load_script("tools/pretrain_net.py")
    held_out = [write_tiny_coco_dataset(tmp_path / f"boxes{k}", num_images=3, seed=k) for k in (0, 1)]
    opts = write_tiny_corpus(tmp_path / "corpus")[:2] + [
        "PRETRAIN.EVAL_PERIOD", "2", "PRETRAIN.PROBES.BOX_TRAIN", "cli_pre_train",
        "PRETRAIN.PROBES.BOX_TEST", "cli_pre_test", "PRETRAIN.PROBES.MIN_SIZE_TEST", "64",
        "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu",
    ]  # fmt: skip
    argv = ["--config-file", str(REPO / "soco/configs/tiny/MoCoV2.yaml")]
    for name, (json_file, images) in zip(("cli_pre_train", "cli_pre_test"), held_out, strict=True):
        argv += ["--register-coco", name, str(json_file), str(images)]
    trainer = pretrain_main(tool.build_argument_parser().parse_args([*argv, *opts]))
    assert [it for _, it in trainer.storage.history("probe/object_linear").values()] == [0, 2]
    assert "probes at iteration 2: object_knn" in (tmp_path / "out" / "log.txt").read_text()
