"""Two CPU processes (gloo, Detectron2's launch) against one, with the same global batch and synchronized BN.

Each comparison trains a tiny config a few iterations; with naiveSyncBN (Detectron2's 2-D
``NaiveSyncBatchNorm`` and soco's ``NaiveSyncBatchNorm1d``) every batch-norm sees the global batch, so the
per-iteration losses and the final weights must match the 1-process run to float tolerance. The runs are
in float64 (``Float64Trainer``): in float32 the stacked batch norms (SoCo FPN: backbone, FPN, box head) turn
the different summation order into gradient differences of up to ~1e-3 relative, which a few steps at the
tiny configs' lr amplify beyond any useful tolerance; in float64 the same runs agree to ~1e-12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed_testing import biased_running_stats, launch_data_stream, launch_pretraining
from pretrain_testing import run_pretraining, write_tiny_corpus

from soco.modeling.queue import FeatureQueue
from soco.utils.metrics_file import read_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "soco" / "configs" / "tiny"
SOCO_SYNC_BN = [
    "MODEL.RESNETS.NORM", "naiveSyncBN", "MODEL.FPN.NORM", "naiveSyncBN",
    "MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN", "SOCO.HEAD.MLP_NORM", "naiveSyncBN",
]  # fmt: skip
#: 2-process vs 1-process tolerance in float64: the sums over the batch run in another order (per process,
#: then all-reduced) and DDP averages the gradients, so results agree to rounding, amplified by training.
TOL = (1e-9, 1e-11)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def _assert_scalars_close(actual: dict[int, float], expected: dict[int, float], name: str, tol) -> None:
    assert actual.keys() == expected.keys(), name
    for iteration, value in expected.items():
        assert np.isclose(actual[iteration], value, rtol=tol[0], atol=tol[1]), (
            f"{name} at iteration {iteration}: {actual[iteration]} vs {value}"
        )


def _assert_final_weights_close(actual_dir: Path, expected_dir: Path, tol, skip: frozenset = frozenset()):
    actual = torch.load(actual_dir / "model_final.pth", map_location="cpu")["model"]
    expected = torch.load(expected_dir / "model_final.pth", map_location="cpu")["model"]
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if key not in skip:
            torch.testing.assert_close(actual[key], value, rtol=tol[0], atol=tol[1], msg=f"{key} differs")


def _queue_rows_of_two_processes(single: torch.Tensor, written: int, global_batch: int) -> torch.Tensor:
    """The 1-process queue reordered as 2 processes gather a batch: rank 0's samples (stream positions
    0, 2, ...) then rank 1's (1, 3, ...), in every block of ``global_batch`` of the ``written`` rows (the
    others still hold the initial random keys, the same on every process)."""
    block = torch.cat([torch.arange(0, global_batch, 2), torch.arange(1, global_batch, 2)])
    order = torch.arange(single.shape[0])
    for start in range(0, min(written, single.shape[0]), global_batch):
        order[start : start + global_batch] = start + block
    return single[order]


@pytest.mark.slow
def test_soco_fpn_two_processes_equal_one_and_resume_exactly(corpus, tmp_path):
    config = str(CONFIGS / "SoCo_FPN.yaml")
    opts = corpus + SOCO_SYNC_BN + ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2"]
    trainer, single = run_pretraining(config, tmp_path / "one", opts, float64=True)
    two = launch_pretraining(config, tmp_path / "two", opts, float64=True)
    for name in ("total_loss", "lr", "tau"):
        _assert_scalars_close(two[0]["scalars"][name], single[name], name, TOL)
    skip = biased_running_stats(trainer.model)
    _assert_final_weights_close(tmp_path / "two", tmp_path / "one", TOL, skip)

    # kill after 2 iterations (the checkpoint), then --resume: the same losses and weights as straight through
    first = launch_pretraining(config, tmp_path / "resumed", opts, float64=True, stop_after_iter=2)
    assert sorted(first[0]["scalars"]["total_loss"]) == [0, 1]
    second = launch_pretraining(config, tmp_path / "resumed", opts, float64=True, resume=True)
    assert second[0]["start_iter"] == second[1]["start_iter"] == 2
    resumed = {**first[0]["scalars"]["total_loss"], **second[0]["scalars"]["total_loss"]}
    _assert_scalars_close(resumed, two[0]["scalars"]["total_loss"], "resumed total_loss", TOL)
    _assert_final_weights_close(tmp_path / "resumed", tmp_path / "two", TOL)


def test_each_process_draws_its_own_share_of_the_stream(corpus, tmp_path):
    config = str(CONFIGS / "SoCo_FPN.yaml")
    single = launch_data_stream(config, tmp_path, corpus, batches=2, world_size=1)[0]
    ranks = launch_data_stream(config, tmp_path, corpus, batches=2, world_size=2)
    for index, batch in enumerate(single):  # global batch 4: rank r holds stream positions r and r + 2
        for rank in range(2):
            for key, value in batch.items():
                torch.testing.assert_close(ranks[rank][index][key], value[rank::2], rtol=0, atol=0, msg=key)
        drawn = torch.cat([ranks[rank][index]["image_index"] for rank in range(2)])
        assert sorted(drawn.tolist()) == sorted(batch["image_index"].tolist())


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, sync_bn, iters",
    [
        ("MoCoV2.yaml", ["MODEL.RESNETS.NORM", "naiveSyncBN"], 3),
        ("SwAV.yaml", ["MODEL.RESNETS.NORM", "naiveSyncBN", "SWAV.MLP_NORM", "naiveSyncBN"], 4),
    ],
)
def test_queues_are_gathered_across_processes(config, sync_bn, iters, corpus, tmp_path):
    """MoCo's queue of keys (with shuffle-BN) and SwAV's queues (used from iteration 3 on by the
    distributed Sinkhorn) hold the global batch on every process: the same as one process, in rank order."""
    opts = corpus[:2] + sync_bn + ["SOLVER.MAX_ITER", str(iters)]
    trainer, single = run_pretraining(str(CONFIGS / config), tmp_path / "one", opts, float64=True)
    two = launch_pretraining(str(CONFIGS / config), tmp_path / "two", opts, float64=True)
    _assert_scalars_close(two[0]["scalars"]["total_loss"], single["total_loss"], "total_loss", TOL)
    single_queues = {n: m for n, m in trainer.model.named_modules() if isinstance(m, FeatureQueue)}
    assert single_queues and two[0]["queues"].keys() == {f"{n}.features" for n in single_queues}
    for name, queue in single_queues.items():
        name = f"{name}.features"
        torch.testing.assert_close(two[1]["queues"][name], two[0]["queues"][name], rtol=0, atol=0)
        written = int(queue.num_enqueued)
        assert written > 0
        expected = _queue_rows_of_two_processes(queue.features, written, global_batch=4)
        torch.testing.assert_close(two[0]["queues"][name], expected, rtol=TOL[0], atol=TOL[1], msg=name)
    skip = biased_running_stats(trainer.model) | {f"{name}.features" for name in single_queues}  # as above
    _assert_final_weights_close(tmp_path / "two", tmp_path / "one", TOL, skip)


def _pretrain_net(launcher: list[str], config: str, opts: list[str], output_dir: Path) -> None:
    """``tools/pretrain_net.py`` started by ``launcher``, one OpenMP thread per process (what torchrun sets
    for several processes) so that both launchers compute alike."""
    command = [*launcher, str(REPO / "tools" / "pretrain_net.py"), "--config-file", config, *opts]
    command += ["OUTPUT_DIR", str(output_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"


@pytest.mark.slow
def test_torchrun_starts_one_job_equal_to_num_gpus(corpus, tmp_path):
    """Two processes started by torchrun train together, exactly as ``--num-gpus 2`` does (before
    launch_from_args, each trained alone with "World size: 1" into the same folder)."""
    config = str(CONFIGS / "SoCo_FPN.yaml")
    opts = corpus + SOCO_SYNC_BN + ["SOLVER.MAX_ITER", "3", "SOLVER.LOG_PERIOD", "1"]
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2"]
    _pretrain_net(torchrun, config, opts, tmp_path / "torchrun")
    spawn = ["--num-gpus", "2", "--dist-url", "auto"]  # a free port: Detectron2's default is fixed per user
    _pretrain_net([sys.executable], config, [*spawn, *opts], tmp_path / "spawn")
    for run in ("torchrun", "spawn"):
        assert "World size: 2" in (tmp_path / run / "log.txt").read_text(), run
    losses = {
        run: [record["total_loss"] for record in read_metrics(tmp_path / run / "metrics.json")]
        for run in ("torchrun", "spawn")
    }
    assert len(losses["spawn"]) == 3 and losses["torchrun"] == losses["spawn"]
    _assert_final_weights_close(tmp_path / "torchrun", tmp_path / "spawn", tol=(0, 0))
