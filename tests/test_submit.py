"""tools/submit.py through submitit's local executor: the jobs run as local subprocesses through the same
code path as on SLURM (pickled job, one process per task, process group from the job's environment,
requeue on the pre-emption signal)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import pytest
from pretrain_testing import assert_same_final_weights, write_tiny_corpus, write_tiny_images
from scripts_testing import load_script
from transfer_testing import TINY_FINETUNE, write_tiny_coco_dataset

from soco.engine.cluster import absolute_output_dir, parse_sbatch_flags, parse_time, resources_from_args
from soco.utils.metrics_file import read_metrics
from soco_proposals.cluster_jobs import run_filter_steps
from soco_proposals.generate import generate_shard
from soco_proposals.raw_shards import SUMMARY_FILE, incomplete_shard_ids, list_chunks, shard_dir_name

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "soco" / "configs" / "tiny"
submit = load_script("tools/submit.py")


@pytest.fixture(autouse=True)
def one_thread_per_job(monkeypatch):
    """The local jobs inherit this environment: one OpenMP thread each, as the test process has."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _submit(*argv: str) -> list:
    args = submit.build_parser().parse_args([str(a) for a in argv])
    return args.kind.submit(args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.slow
def test_two_task_pretraining_job_trains_to_model_final(corpus, tmp_path):
    out = tmp_path / "run"
    sync_bn = ["MODEL.RESNETS.NORM", "naiveSyncBN", "MODEL.FPN.NORM", "naiveSyncBN"]
    sync_bn += ["MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN", "SOCO.HEAD.MLP_NORM", "naiveSyncBN"]
    (job,) = _submit(
        "pretrain", "--cluster", "local", "--gpus-per-node", "0", "--tasks-per-node", "2", "--time", "10",
        "--config-file", TINY / "SoCo_FPN.yaml", *corpus, *sync_bn,
        "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", out,
    )  # fmt: skip
    assert job.results() == [{"output_dir": str(out), "start_iter": 0, "iter": 3}] * 2  # both tasks
    assert (out / "model_final.pth").is_file()
    assert "on 2 process(es): 2 images per process (GPU), global batch 4" in (out / "log.txt").read_text()


def _task_processes(controller_pid: int) -> list[int]:
    """The processes whose parent is ``controller_pid`` (submitit's local controller starts the tasks)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == controller_pid:
                children.append(int(entry.name))
    return children


def _wait_for(condition, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


def _global_rank(pid: int) -> int:
    """submitit's rank of a local task process (from its environment)."""
    items = (Path("/proc") / str(pid) / "environ").read_text().split("\0")
    variables = dict(item.split("=", 1) for item in items if "=" in item)
    return int(variables["SUBMITIT_LOCAL_GLOBALID"])


def _logged_iterations(output_dir: Path) -> list[int]:
    """The iterations of metrics.json's training rows (one per iteration with SOLVER.LOG_PERIOD 1)."""
    metrics = output_dir / "metrics.json"
    return [r["iteration"] for r in read_metrics(metrics) if "total_loss" in r] if metrics.is_file() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the task processes through /proc")
def test_a_preempted_two_task_job_stops_together_requeues_and_ends_bit_for_bit(tmp_path):
    """MoCo v2 on 2 tasks with per-task BN (shuffle-BN) and a DataLoader worker each. Only task 1 gets the
    warning signal: both stop after the same iteration, task 0 saves it and requeues, and the requeued job
    ends with the weights of an uninterrupted job, bit for bit, every iteration logged once."""
    images = write_tiny_images(tmp_path / "images", count=8)
    common = [
        "pretrain", "--cluster", "local", "--gpus-per-node", "0", "--tasks-per-node", "2", "--time", "10",
        "--config-file", TINY / "MoCoV2.yaml", "PRETRAIN.DATA.IMAGE_ROOT", images, "MOCO.VIEWS.SIZE", "32",
        "SOLVER.MAX_ITER", "30", "DATALOADER.NUM_WORKERS", "1", "MODEL.DEVICE", "cpu",
    ]  # fmt: skip
    (straight,) = _submit(*common, "OUTPUT_DIR", tmp_path / "straight")
    assert [r["start_iter"] for r in straight.results()] == [0, 0]

    out = tmp_path / "preempted"
    (job,) = _submit(*common, "OUTPUT_DIR", out)
    _wait_for(lambda: len(_logged_iterations(out)) >= 3, what="three logged iterations")
    (task1,) = [pid for pid in _task_processes(job._process.pid) if _global_rank(pid) == 1]
    os.kill(task1, signal.SIGUSR2)  # SLURM would signal every task; one suffices to stop all
    results = job.results()
    resumed_at = results[0]["start_iter"]
    assert results == [{"output_dir": str(out), "start_iter": resumed_at, "iter": 30}] * 2
    assert 3 < resumed_at < 30, "the job was not pre-empted mid-run"
    stop_line = f"every process stops after iteration {resumed_at - 1}"
    assert stop_line in (out / "log.txt").read_text() and stop_line in (out / "log.txt.rank1").read_text()
    log = job.stdout() + job.stderr()
    assert log.count("Requeued job") == 1 and "Calling checkpoint method" in log
    assert (out / f"model_{resumed_at - 1:07d}.pth").is_file()
    assert _logged_iterations(out) == list(range(30))  # none repeated, none skipped
    assert_same_final_weights(tmp_path / "straight", out)  # bit for bit


def test_proposal_array_equals_one_process_and_reruns_only_unfinished_shards(tmp_path):
    images = write_tiny_images(tmp_path / "images", count=5, size=(48, 40))
    single_raw = tmp_path / "single" / "raw"
    generate_shard(images, single_raw, workers=1, chunk_size=2, progress=False)
    single = run_filter_steps(single_raw, "none", single_raw.parent / "f.json", single_raw.parent / "p.json")

    raw = tmp_path / "array" / "raw"
    argv = ["proposals", "--cluster", "local", "--image-root", images, "--output", raw, "--num-shards", "2"]
    argv += ["--workers", "1", "--chunk-size", "2", "--strategy", "none", "--time", "10"]
    jobs = _submit(*argv)
    assert len(jobs) == 3  # two array tasks, then the filter job
    for job in jobs:
        job.result()
    post = tmp_path / "array" / "train_nonepost.json"
    assert json.loads(post.read_text()) == json.loads(Path(single["post"]).read_text())
    assert incomplete_shard_ids(raw, 2) == []

    # shard 1 stopped half-way (its summary and a chunk gone): a re-run submits that shard only
    shard = raw / shard_dir_name(1, 2)
    (shard / SUMMARY_FILE).unlink()
    list_chunks(shard)[0].unlink()
    post.unlink()
    jobs = _submit(*argv)
    assert len(jobs) == 2 and jobs[0].result()["shard_id"] == 1
    jobs[1].result()
    assert json.loads(post.read_text()) == json.loads(Path(single["post"]).read_text())


def test_options_become_the_sbatch_script(tmp_path, monkeypatch):
    """The SLURM executor's script for a 2 x 8 GPU pretraining job (submitit needs an srun to exist)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    args = submit.build_parser().parse_args(
        ["pretrain", "--cluster", "slurm", "--nodes", "2", "--partition", "gpu", "--account", "lab",
         "--constraint", "h100", "--time", "2-12:00:00", "--mem", "400", "--cpus-per-task", "12",
         "--sbatch=--qos=high", "--sbatch=--exclusive", "--config-file", "c.yaml", "OUTPUT_DIR", "out"]
    )  # fmt: skip
    resources = resources_from_args(args, tmp_path / "jobs", "soco-pretrain", cpus=10)
    resources.nodes, resources.gpus_per_node, resources.tasks_per_node = 2, 8, 8
    script = resources.executor(dependency="afterok:42")._executor._make_submission_file_text("CMD", "uid")
    for line in ("--nodes=2", "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=12",
                 "--partition=gpu", "--account=lab", "--constraint=h100", "--time=3600", "--mem=400GB",
                 "--qos=high", "--exclusive", "--dependency=afterok:42", "--signal=USR2@90"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line


def test_time_and_flag_parsing():
    times = ("90", "12:00:00", "1-00:00:00", "2-06", "30:30")  # minutes, H:M:S, D-H:M:S, D-H, M:S
    assert [parse_time(t) for t in times] == [90, 720, 1440, 3240, 31]
    assert parse_sbatch_flags(["--qos=high", "--exclusive", "--mail-type=END"]) == {
        "qos": "high", "exclusive": True, "mail_type": "END"
    }
    with pytest.raises(argparse.ArgumentTypeError, match="expected --NAME"):
        parse_sbatch_flags(["qos=high"])
    with pytest.raises(argparse.ArgumentTypeError, match="expected MINUTES"):
        parse_time("soon")
    with pytest.raises(ValueError, match="give OUTPUT_DIR"):
        absolute_output_dir(["SOLVER.MAX_ITER", "3"])
    opts, folder = absolute_output_dir(["OUTPUT_DIR", "out", "SEED", "1"])
    assert opts == ["OUTPUT_DIR", str(Path("out").resolve()), "SEED", "1"] and folder == Path("out").resolve()


@pytest.mark.slow
def test_fine_tuning_job_trains_and_evaluates(tmp_path):
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path / "shapes"))
    out = tmp_path / "ft"
    (job,) = _submit(
        "finetune", "--cluster", "local", "--gpus-per-node", "0", "--time", "10",
        "--register-coco", "tiny_shapes_train", json_file, images,
        "--register-coco", "tiny_shapes_val", json_file, images,
        "--config-file", REPO / "detectron2_configs" / "coco" / "mask_rcnn_R_50_FPN_1x_scratch.yaml",
        *TINY_FINETUNE, "DATASETS.TRAIN", "('tiny_shapes_train',)", "DATASETS.TEST", "('tiny_shapes_val',)",
        "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out,
    )  # fmt: skip
    assert job.result() == {"output_dir": str(out), "model_final": True}
    final = read_metrics(out / "metrics.json")[-1]
    assert "bbox/AP" in final and "segm/AP" in final  # the evaluation after training ran


def test_transfer_benchmark_job_runs_the_benchmark(tmp_path, monkeypatch):
    """submitit's debug executor (the job in this process; its fine-tunings are train_net processes)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path / "shapes", num_images=3))
    seed = TINY_FINETUNE.index("SEED")
    without_seed = TINY_FINETUNE[:seed] + TINY_FINETUNE[seed + 2 :]  # the benchmark sets SEED per run
    config = REPO / "detectron2_configs" / "coco" / "mask_rcnn_R_50_FPN_1x_scratch.yaml"
    (job,) = _submit(
        "benchmark", "--cluster", "debug", "--time", "10", "--num-gpus", "0",
        "--config-file", config, "--weights", "scratch=", "--seeds", "1", "--first-seed", "3",
        "--register-coco", "job_train", json_file, images, "--register-coco", "job_val", json_file, images,
        tmp_path / "bench", *without_seed, "SOLVER.MAX_ITER", "1",
        "DATASETS.TRAIN", "('job_train',)", "DATASETS.TEST", "('job_val',)",
    )  # fmt: skip
    document = job.result()
    assert [(r["init"], r["seed"]) for r in document["runs"]] == [("scratch", 3)]
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["summary"] == document["summary"]
    assert (tmp_path / "bench" / "scratch" / "seed3" / "model_final.pth").is_file()
    with pytest.raises(FileNotFoundError, match="--weights soco=nope.pkl: the file does not exist"):
        _submit("benchmark", "--cluster", "debug", "--config-file", config, "--weights", "soco=nope.pkl",
                "--seeds", "1", tmp_path / "b2")  # fmt: skip


def test_eval_only_job_evaluates_the_given_weights_not_the_last_checkpoint(tmp_path, submitted):
    """The job's task (captured at submission, run here) must not resume: OUTPUT_DIR's last_checkpoint
    names a file that is not there, so reading it instead of MODEL.WEIGHTS would fail."""
    json_file, images = map(str, write_tiny_coco_dataset(tmp_path / "shapes", num_images=2))
    out = tmp_path / "eval"
    out.mkdir()
    (out / "last_checkpoint").write_text("model_of_an_earlier_training.pth")
    _submit(
        "finetune", "--cluster", "local", "--gpus-per-node", "0", "--eval-only",
        "--register-coco", "eval_only_val", json_file, images,
        "--config-file", REPO / "detectron2_configs" / "coco" / "mask_rcnn_R_50_FPN_1x_scratch.yaml",
        *TINY_FINETUNE, "DATASETS.TEST", "('eval_only_val',)", "MODEL.WEIGHTS", "", "OUTPUT_DIR", out,
    )  # fmt: skip
    (task,) = submitted
    assert task.args.eval_only and not task.args.resume
    results = task.entry(task.args)  # the task's own process would run exactly this
    assert set(results) == {"bbox", "segm"}  # the evaluation of the one test set


def test_ims_per_gpu_is_appended_to_the_overrides_of_pretraining_and_linear_jobs(tmp_path, submitted):
    for command, config in (("pretrain", TINY / "MoCoV2.yaml"), ("linear", TINY / "Linear.yaml")):
        common = (command, "--cluster", "local", "--config-file", config)
        _submit(*common, "--ims-per-gpu", "16", "OUTPUT_DIR", tmp_path)
        _submit(*common, "OUTPUT_DIR", tmp_path)
    pretrain, pretrain_default, linear, linear_default = (task.args for task in submitted)
    output = ["OUTPUT_DIR", str(tmp_path)]
    assert pretrain.opts == linear.opts == [*output, "SOLVER.IMS_PER_GPU", "16"]
    assert pretrain_default.opts == linear_default.opts == output
    assert pretrain.register_coco is None and not hasattr(linear, "register_coco")


def test_cpu_tasks_need_a_cpu_device_and_say_so_before_submitting(tmp_path, submitted, capsys):
    """``--gpus-per-node 0``: a MODEL.DEVICE other than cpu (override, config file or Detectron2's default
    cuda) is refused before submission, never replaced; MODEL.DEVICE cpu is submitted as given."""
    config = REPO / "detectron2_configs" / "coco" / "mask_rcnn_R_50_FPN_1x_scratch.yaml"  # sets no device
    common = ("finetune", "--cluster", "local", "--gpus-per-node", "0", "--config-file", config)
    for device in ("cuda", "cuda:1"):
        opts = ["MODEL.DEVICE", device] if device != "cuda" else []
        refused = f"--gpus-per-node 0 gives the tasks no GPU, but MODEL.DEVICE is '{device}'"
        with pytest.raises(ValueError, match=refused):
            _submit(*common, *opts, "OUTPUT_DIR", tmp_path)
    assert not submitted
    _submit(*common, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", tmp_path)
    (task,) = submitted
    assert task.args.opts == ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)]
    with pytest.raises(SystemExit):
        _submit("finetune", "--help")
    assert "0: CPU tasks, which need MODEL.DEVICE cpu" in " ".join(capsys.readouterr().out.split())
