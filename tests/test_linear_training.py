"""Linear classification end to end on a tiny colour ImageFolder: accuracy and logging, exact resume,
the frozen-backbone check, the cached-features protocol, the world-size rule and two processes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook
from detectron2.utils import comm
from distributed_testing import run_distributed
from linear_testing import TINY_CONFIG, linear_args, tiny_opts, write_colour_splits
from pretrain_testing import assert_same_final_weights

from soco.engine import cluster
from soco.engine.cluster import CLUSTER_JOB_REGISTRY, add_resource_arguments
from soco.engine.linear import load_linear_cfg, resolve_linear_cfg, run_linear
from soco.engine.linear import run as linear_run
from soco.engine.linear.data import build_val_loader, evaluate_top_k
from soco.engine.linear.model import LinearClassifier, build_linear_classifier
from soco.engine.schedule import key_sources
from soco.utils import read_metrics


class _SignalDuring(HookBase):
    """Send SIGUSR1 (the runs' SOLVER.PREEMPTION_SIGNAL) to this process while ``iteration`` runs."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_step(self) -> None:
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGUSR1)


class _Losses(HookBase):
    def __init__(self):
        self.values: dict[int, tuple[float, float]] = {}

    def after_step(self) -> None:
        histories = self.trainer.storage.histories()
        self.values[self.trainer.iter] = (histories["total_loss"].latest(), histories["lr"].latest())


_BUILD_HOOKS = linear_run.LinearTrainer.build_hooks


def _run(opts, monkeypatch, resume=False, stop_during=None):
    """run_linear with a loss/lr recorder (and a pre-emption signal during iteration ``stop_during``) in its
    hooks, before the evaluation, the writers and the pre-emption stop."""
    recorder = _Losses()
    extra = [recorder] + ([_SignalDuring(stop_during)] if stop_during is not None else [])

    def build_hooks(self):
        hooks = _BUILD_HOOKS(self)
        evaluation = next(index for index, hook in enumerate(hooks) if isinstance(hook, EvalHook))
        return hooks[:evaluation] + extra + hooks[evaluation:]

    monkeypatch.setattr(linear_run.LinearTrainer, "build_hooks", build_hooks)
    trainer = run_linear(linear_args([*opts, "SOLVER.PREEMPTION_SIGNAL", "SIGUSR1"], resume=resume))
    return trainer, recorder.values


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return write_colour_splits(tmp_path_factory.mktemp("colours"))


def test_separable_classes_reach_100_percent_and_a_resumed_run_equals_an_uninterrupted_one(
    splits, tmp_path, monkeypatch
):
    train, val = splits
    extra = ["LINEAR.CHECKPOINT_PERIOD_EPOCHS", "2", "LINEAR.EVAL_PERIOD_EPOCHS", "2"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    trainer, straight = _run(tiny_opts(train, val, straight_dir, *extra), monkeypatch)
    assert trainer.last_results["top1"] == 100.0 and trainer.last_results["val_images"] == 9
    results = json.loads((straight_dir / "linear_results.json").read_text())
    assert results["top1"] == 100.0 and results["epochs"] == 4 and results["global_batch"] == 8
    logged = [r for r in read_metrics(straight_dir / "metrics.json") if "linear/top1" in r]
    # the last evaluation runs after training, logged at iteration MAX_ITER as Detectron2 does
    assert [r["iteration"] for r in logged] == [5, 12] and logged[-1]["linear/top5"] == 100.0
    # lr set per epoch: 0.9375 (= 30 x 8 / 256) for epochs 0-1, x0.1 at epoch 2, x0.01 at epoch 3
    lrs = [round(lr, 6) for _, (_, lr) in sorted(straight.items())]
    assert lrs == [0.9375] * 6 + [0.09375] * 3 + [0.009375] * 3

    # pre-empted during iteration 4 (not a checkpoint iteration): that iteration saved, no results written
    stopped, first = _run(tiny_opts(train, val, resumed_dir, *extra), monkeypatch, stop_during=4)
    assert stopped.preempted_at == 4 and (resumed_dir / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not (resumed_dir / "linear_results.json").exists()
    _, second = _run(tiny_opts(train, val, resumed_dir, *extra), monkeypatch, resume=True)
    assert sorted(first) == list(range(5)) and sorted(second) == list(range(5, 12))
    resumed = {**first, **second}
    for it, (loss, lr) in straight.items():
        assert np.isclose(resumed[it][0], loss, rtol=1e-5) and resumed[it][1] == lr, f"iteration {it}"
    assert_same_final_weights(straight_dir, resumed_dir, rtol=1e-5, atol=1e-7)


def test_a_backbone_that_moves_fails_the_check_after_the_first_epoch(splits, tmp_path, monkeypatch):
    train, val = splits

    def leaky_train(self, mode=True):  # the original SoCo/PixPro bug: the "frozen" backbone in train mode
        torch.nn.Module.train(self, mode)
        return self

    monkeypatch.setattr(LinearClassifier, "train", leaky_train)
    with pytest.raises(RuntimeError, match=r"epoch 1 \(iteration 3\): \d+ backbone tensors .*running_mean"):
        run_linear(linear_args(tiny_opts(train, val, tmp_path, "SOLVER.EPOCHS", "2")))


def test_cached_features_protocol_trains_the_same_head_on_centre_crop_features(splits, tmp_path):
    train, val = splits
    amp = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bfloat16"]  # the autocast step on CPU too
    opts = tiny_opts(train, val, tmp_path, "LINEAR.PROTOCOL", "cached_features", *amp)
    trainer = run_linear(linear_args(opts))
    assert trainer.last_results["top1"] == 100.0 and trainer.last_results["train_skipped"] == 0
    results = json.loads((tmp_path / "linear_results.json").read_text())
    assert results["protocol"] == "cached_features" and results["iterations"] == 12


def test_world_size_rule_scales_the_global_batch_and_lr():
    opts = ["LINEAR.DATA.TRAIN", "x", "LINEAR.DATA.VAL", "y", "LINEAR.RANDOM_INIT", "True"]
    per_gpu = [*opts, "SOLVER.IMS_PER_GPU", "4"]
    cfg = resolve_linear_cfg(load_linear_cfg(TINY_CONFIG, per_gpu), 100, key_sources(TINY_CONFIG, per_gpu), 4)
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == pytest.approx(30 * 16 / 256)
    assert cfg.SOLVER.ITERS_PER_EPOCH == 6 and cfg.SOLVER.MAX_ITER == 36 and cfg.SOLVER.CHECKPOINT_PERIOD == 6
    default = resolve_linear_cfg(load_linear_cfg(TINY_CONFIG, opts), 100, key_sources(TINY_CONFIG, opts), 4)
    assert default.SOLVER.IMS_PER_BATCH == 16 and default.SOLVER.BASE_LR == pytest.approx(30 * 16 / 256)
    reference = load_linear_cfg(TINY_CONFIG.replace("tiny/Linear", "linear/Base-Linear"), opts)
    resolved = resolve_linear_cfg(reference, 1281167, {}, 8)
    assert resolved.SOLVER.IMS_PER_BATCH == 256 and resolved.SOLVER.BASE_LR == 30.0
    assert resolved.SOLVER.ITERS_PER_EPOCH == 5004 and resolved.SOLVER.MAX_ITER == 500400


def _evaluate_in_each_process(train: str, val: str, output: str) -> None:
    cfg = load_linear_cfg(TINY_CONFIG, tiny_opts(Path(train), Path(val), Path(output)))
    data = linear_run.match_classes(*[linear_run.list_labeled_images(p) for p in (train, val)])
    (Path(val) / "blue" / "blue_1.png").write_bytes(b"broken")  # every process sees it broken
    model = build_linear_classifier(cfg, 3)
    results = evaluate_top_k(model, build_val_loader(cfg, data), len(data.images))
    torch.save(results, Path(output) / f"rank{comm.get_rank()}.pt")


@pytest.mark.slow  # two spawned processes: about 40 s on the shared 2-core machine
def test_two_processes_score_every_validation_image_once(tmp_path):
    train, val = write_colour_splits(tmp_path / "data", train_per_class=1, val_per_class=3)  # 9: 5 + 4
    run_distributed(_evaluate_in_each_process, tmp_path, str(train), str(val), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["val_images"] == 8 and ranks[0]["val_skipped"] == 1
    assert ranks[0]["val_skipped/not_an_image"] == 1


def test_submit_linear_job_runs_the_linear_protocol(splits, tmp_path, submitted):
    """``tools/submit.py linear``: the task captured at submission (what SLURM would run) trains here."""
    train, val = splits
    job = CLUSTER_JOB_REGISTRY.get("LinearJob")
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    add_resource_arguments(parser)
    opts = tiny_opts(train, val, tmp_path / "out", "SOLVER.EPOCHS", "2", "LINEAR.STEP_EPOCHS", "(1,)")
    args = parser.parse_args(
        ["--gpus-per-node", "0", "--cluster", "local", "--config-file", TINY_CONFIG, *opts]
    )
    args.command = "linear"
    job.submit(args)
    (task,) = submitted
    assert task.args.resume and task.args.opts[task.args.opts.index("OUTPUT_DIR") + 1] == str(
        tmp_path / "out"
    )
    result = task.entry(task.args)
    assert result["output_dir"] == str(tmp_path / "out") and result["results"]["val_images"] == 9


def test_every_pretraining_launcher_has_a_linear_launcher_that_reads_its_run_folder(tmp_path):
    tools = Path(TINY_CONFIG).parents[3] / "tools"
    recipes = sorted(p.stem for p in tools.glob("*_*ep.sh"))
    assert {"SoCo_FPN_100ep", "MoCoV2_200ep", "SwAV_200ep", "DenseCL_200ep"} <= set(recipes)
    for recipe in recipes:
        command = [str(tools / f"{recipe}_linear.sh"), "--train", "t", "--val", "v", "--dry-run"]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
        assert (
            f"output/{recipe.lower()}/model_final.pth" in out
            and "soco/configs/linear/Base-Linear.yaml" in out
        )
        assert f"LINEAR.DATA.TRAIN {tmp_path}/t" in out and "--resume" in out
    swav = subprocess.run(
        [str(tools / "SwAV_200ep_linear.sh"), "--train", "t", "--val", "v", "--setting", "swav", "--dry-run"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Linear_SwAV_setting.yaml" in swav and "output/swav_200ep_linear_swav" in swav


@pytest.mark.parametrize("preempted_at, requeued", [(7, [7]), (None, [])])
def test_a_preempted_linear_task_requeues_once_after_its_stop(preempted_at, requeued, monkeypatch):
    trainer = argparse.Namespace(preempted_at=preempted_at, cfg=argparse.Namespace(OUTPUT_DIR="out"))
    calls = []
    monkeypatch.setattr(cluster, "run_linear", lambda args: trainer)
    monkeypatch.setattr(cluster, "requeue_submitit_job", calls.append)
    assert cluster.linear_entry(argparse.Namespace()) == {"output_dir": "out", "results": None}
    assert calls == requeued
