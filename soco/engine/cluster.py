"""Cluster jobs through submitit (SLURM, or local subprocesses): pretraining, proposals, fine-tuning.

Each kind of job is a class in ``CLUSTER_JOB_REGISTRY``; ``tools/submit.py`` turns every registered kind
into a sub-command. A new kind only registers a class with ``NAME``, ``HELP``, ``add_arguments`` and
``submit`` (``TransferBenchmarkJob`` below is a short example).

Training jobs run one task per GPU; each task joins
the process group from SLURM's variables (submitit's ``TorchDistributedEnvironment``), always resumes from
``OUTPUT_DIR/last_checkpoint`` when there is one, and is requeued on pre-emption or at the time limit.
A pretraining or linear-classification job loses nothing: on submitit's warning signal every task stops
after the same iteration, task 0 saves it and requeues (:mod:`.preemption`), and the requeued job continues
at the next iteration.
A fine-tuning job is requeued by submitit's own handler and resumes from its last periodic checkpoint
(``SOLVER.CHECKPOINT_PERIOD`` bounds the loss).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from detectron2.utils.registry import Registry

from soco.data import add_register_coco_argument
from soco.detection import run_transfer
from soco.detection.benchmark import add_benchmark_arguments, plan_runs, run_benchmark, spec_from_args
from soco_proposals.cluster_jobs import default_json_paths, generate_array_shard, run_filter_steps
from soco_proposals.generate import DEFAULT_CHUNK_SIZE
from soco_proposals.raw_shards import incomplete_shard_ids

from .distributed import config_device, init_process_group_from_env, release_process_group
from .linear import run_linear
from .preemption import requeue_submitit_job, submitit_stop_requests
from .pretrain import run_pretraining

logger = logging.getLogger(__name__)

CLUSTER_JOB_REGISTRY = Registry("CLUSTER_JOB")
CLUSTER_JOB_REGISTRY.__doc__ = """
Kinds of cluster jobs, one ``tools/submit.py`` sub-command each: classes with ``NAME`` (the sub-command),
``HELP``, ``add_arguments(parser)`` and ``submit(args) -> list[submitit.Job]`` (``args`` also holds the
options of :func:`add_resource_arguments`).
"""


@dataclass
class Resources:
    """What to ask the scheduler for; ``cluster`` "slurm", "local" (subprocesses) or "debug" (in process)."""

    folder: Path
    cluster: str | None = None
    name: str = "soco"
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 10
    mem_gb: float | None = None
    timeout_min: int = 60 * 24
    partition: str | None = None
    account: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    sbatch: dict[str, Any] = field(default_factory=dict)

    def executor(self, **overrides: Any) -> submitit.AutoExecutor:
        """An executor with these resources (``overrides`` replace some, e.g. for the filter job)."""
        settings = {**self.__dict__, **overrides}
        executor = submitit.AutoExecutor(folder=settings["folder"], cluster=settings["cluster"])
        parameters = {
            "name": settings["name"],
            "nodes": settings["nodes"],
            "gpus_per_node": settings["gpus_per_node"],
            "tasks_per_node": settings["tasks_per_node"],
            "cpus_per_task": settings["cpus_per_task"],
            "timeout_min": settings["timeout_min"],
            "slurm_array_parallelism": settings["array_parallelism"],
            "slurm_additional_parameters": dict(settings["sbatch"]),
        }
        if settings["mem_gb"]:
            parameters["mem_gb"] = settings["mem_gb"]
        for key in ("partition", "account", "constraint"):
            if settings[key]:
                parameters[f"slurm_{key}"] = settings[key]
        if settings.get("dependency"):
            parameters["slurm_dependency"] = settings["dependency"]
        executor.update_parameters(**parameters)
        return executor


def parse_time(text: str) -> int:
    """Minutes of a SLURM time: ``MINUTES``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]`` (seconds round up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"time {text!r}: expected MINUTES, HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(1) is None and match.group(3) is None:
        return first  # plain minutes
    if match.group(1) is None and match.group(4) is None:
        return first + (second > 0)  # MM:SS
    hours, minutes, seconds = first, second, third
    return days * 24 * 60 + hours * 60 + minutes + (seconds > 0)


def parse_sbatch_flags(flags: Sequence[str]) -> dict[str, Any]:
    """Extra ``sbatch`` flags (``--qos=high``, ``--exclusive``) as submitit's additional parameters."""
    parameters: dict[str, Any] = {}
    for flag in flags:
        match = re.fullmatch(r"--([A-Za-z][\w-]*)(?:=(.*))?", flag.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"sbatch flag {flag!r}: expected --NAME or --NAME=VALUE")
        parameters[match.group(1).replace("-", "_")] = True if match.group(2) is None else match.group(2)
    return parameters


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    """The scheduler options every sub-command takes."""
    group = parser.add_argument_group("cluster resources")
    add = group.add_argument
    add("--cluster", choices=["slurm", "local", "debug"], default=None,
        help="where to run (default: SLURM when sbatch is available, else local subprocesses)")
    add("--job-dir", type=Path, default=None, help="submitit's folder for scripts and logs")
    add("--partition", default=None)
    add("--account", default=None)
    add("--constraint", default=None)
    add("--time", type=parse_time, default=24 * 60, help="time limit per job (default 24:00:00)")
    add("--mem", type=float, default=None, help="memory per node in GB (default: the partition's)")
    add("--cpus-per-task", type=int, default=None, help="CPU cores per task (default depends on the job)")
    add("--sbatch", action="append", default=[], metavar="FLAG",
        help="extra sbatch flag, repeatable: --sbatch=--qos=high --sbatch=--exclusive")  # fmt: skip


def resources_from_args(args: argparse.Namespace, default_folder: Path, name: str, cpus: int) -> Resources:
    """The :class:`Resources` of the options of :func:`add_resource_arguments` (``cpus``: the default)."""
    return Resources(
        folder=args.job_dir or default_folder,
        cluster=args.cluster,
        name=name,
        cpus_per_task=args.cpus_per_task or cpus,
        mem_gb=args.mem,
        timeout_min=args.time,
        partition=args.partition,
        account=args.account,
        constraint=args.constraint,
        sbatch=parse_sbatch_flags(args.sbatch),
    )


class DistributedJob(submitit.helpers.Checkpointable):
    """One task of a training job: join the process group of the job's tasks, then run ``entry(args)``.

    Training ``args`` always ask to resume, so the first run starts from scratch (or ``MODEL.WEIGHTS``) and
    every requeued run (submitit calls :meth:`checkpoint`, inherited: the same job again) continues from
    ``last_checkpoint``; an ``--eval-only`` job evaluates ``MODEL.WEIGHTS``.
    """

    def __init__(self, entry: Callable[[argparse.Namespace], Any], args: argparse.Namespace):
        self.entry = entry
        self.args = args

    def __call__(self) -> Any:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        init_process_group_from_env(config_device(self.args.config_file, self.args.opts))
        result = self.entry(self.args)
        release_process_group()  # before the interpreter exits (see release_process_group)
        return result


def _run_requeued_on_preemption(run: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """``run(args)`` (a training main returning its trainer) listening for submitit's warning signal from the
    job's start: the signal only asks for a stop; every task stops after the same iteration, task 0 saves
    it, then requeues the job once and the others exit (:mod:`.preemption`). Returns the finished trainer."""
    with submitit_stop_requests():
        trainer = run(args)
    if trainer.preempted_at is not None:
        requeue_submitit_job(trainer.preempted_at)
    return trainer


def pretrain_entry(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain (``tools/pretrain_net.py``'s main); returns where it started and stopped. Pre-emption:
    :func:`_run_requeued_on_preemption`."""
    trainer = _run_requeued_on_preemption(run_pretraining, args)
    return {"output_dir": trainer.cfg.OUTPUT_DIR, "start_iter": trainer.start_iter, "iter": trainer.iter}


def finetune_entry(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune or evaluate (``tools/train_net.py``'s main); returns the evaluation results (``--eval-only``)
    or the output folder and whether ``model_final.pth`` is there (the metrics are in its metrics.json)."""
    results = run_transfer(args)
    if args.eval_only:
        return results
    output_dir = absolute_output_dir(args.opts)[1]
    return {"output_dir": str(output_dir), "model_final": (output_dir / "model_final.pth").is_file()}


def linear_entry(args: argparse.Namespace) -> dict[str, Any]:
    """Linear classification (``tools/train_linear.py``'s main); returns the output folder and the final
    top-1 / top-5 (None when the run stopped before its last iteration). Pre-emption:
    :func:`_run_requeued_on_preemption`; the requeued job continues at the iteration after the stop."""
    trainer = _run_requeued_on_preemption(run_linear, args)
    return {"output_dir": trainer.cfg.OUTPUT_DIR, "results": getattr(trainer, "last_results", None)}


def absolute_output_dir(opts: list[str]) -> tuple[list[str], Path]:
    """``opts`` with ``OUTPUT_DIR`` made absolute (jobs may start in another folder), and that folder."""
    keys = opts[0::2]
    if "OUTPUT_DIR" not in keys:
        raise ValueError("give OUTPUT_DIR among the KEY VALUE overrides: a requeued job resumes from it")
    index = 2 * keys.index("OUTPUT_DIR") + 1
    output_dir = Path(opts[index]).resolve()
    return [*opts[:index], str(output_dir), *opts[index + 1 :]], output_dir


class _TrainingJob:
    """A job of N nodes x G GPUs (one task per GPU) running ``ENTRY`` in every task; subclasses add their
    command-line arguments (``add_job_arguments``) and the fields of the entry's arguments (``job_args``)."""

    ENTRY: Callable[[argparse.Namespace], Any]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config-file", required=True)
        parser.add_argument("--nodes", type=int, default=1)
        gpus_help = "one task per GPU (0: CPU tasks, which need MODEL.DEVICE cpu)"
        parser.add_argument("--gpus-per-node", type=int, default=8, help=gpus_help)
        parser.add_argument("--tasks-per-node", type=int, default=None, help="default: --gpus-per-node, or 1")
        cls.add_job_arguments(parser)
        parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, OUTPUT_DIR included")

    @classmethod
    def submit(cls, args: argparse.Namespace) -> list:
        tasks_per_node = args.tasks_per_node or max(args.gpus_per_node, 1)
        # num_gpus, num_machines: what default_setup logs (the process group comes from the job's variables)
        fields = {"config_file": str(Path(args.config_file).resolve()), "opts": list(args.opts)}
        fields |= {"resume": True, "eval_only": False, "num_gpus": tasks_per_node, "num_machines": args.nodes}
        fields |= {"machine_rank": 0, "dist_url": "env://", **cls.job_args(args)}
        fields["opts"], output_dir = absolute_output_dir(fields["opts"])
        device = config_device(fields["config_file"], fields["opts"]) if args.gpus_per_node == 0 else ""
        if device and not device.startswith("cpu"):  # CPU tasks on another device
            raise ValueError(
                f"--gpus-per-node 0 gives the tasks no GPU, but MODEL.DEVICE is {device!r} (from "
                f"{args.config_file}, its overrides or Detectron2's default); add MODEL.DEVICE cpu to the "
                "overrides, or give --gpus-per-node 1 or more"
            )
        resources = resources_from_args(args, output_dir / "submitit", f"soco-{args.command}", cpus=10)
        resources.nodes, resources.gpus_per_node = args.nodes, args.gpus_per_node
        resources.tasks_per_node = tasks_per_node
        job = resources.executor().submit(DistributedJob(cls.ENTRY, argparse.Namespace(**fields)))
        logger.info("submitted %s job %s: %d task(s) on %d node(s), output %s", args.command, job.job_id,
                    args.nodes * tasks_per_node, args.nodes, output_dir)  # fmt: skip
        return [job]

    @staticmethod
    def add_job_arguments(parser: argparse.ArgumentParser) -> None:
        """Arguments of this kind of job only."""

    @staticmethod
    def job_args(args: argparse.Namespace) -> dict[str, Any]:
        """Fields of the entry's argument namespace beyond the common ones (``opts`` replaces them)."""
        return {}


class _PerGpuBatchJob(_TrainingJob):
    """A training job whose per-GPU batch ``--ims-per-gpu`` may set (``SOLVER.IMS_PER_GPU``)."""

    @classmethod
    def add_job_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--ims-per-gpu", type=int, default=None, help="sets SOLVER.IMS_PER_GPU")

    @classmethod
    def job_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        per_gpu = ["SOLVER.IMS_PER_GPU", str(args.ims_per_gpu)] if args.ims_per_gpu else []
        return {"opts": [*args.opts, *per_gpu]}


@CLUSTER_JOB_REGISTRY.register()
class PretrainJob(_PerGpuBatchJob):
    """Pretraining of any config across N nodes x G GPUs (``tools/pretrain_net.py`` in every task)."""

    NAME = "pretrain"
    HELP = "pretrain a config on N nodes x G GPUs, requeued on pre-emption/time limit"
    ENTRY = pretrain_entry

    @classmethod
    def add_job_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_job_arguments(parser)
        add_register_coco_argument(parser, use="PRETRAIN.PROBES.BOX_TRAIN/BOX_TEST")

    @classmethod
    def job_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().job_args(args), "register_coco": args.register_coco}


@CLUSTER_JOB_REGISTRY.register()
class FinetuneJob(_TrainingJob):
    """Fine-tuning (or ``--eval-only``) of a Detectron2 config (``tools/train_net.py`` in every task)."""

    NAME = "finetune"
    HELP = "fine-tune a detector from converted weights on N nodes x G GPUs"
    ENTRY = finetune_entry

    @staticmethod
    def add_job_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--eval-only", action="store_true")
        add_register_coco_argument(parser)

    @staticmethod
    def job_args(args: argparse.Namespace) -> dict[str, Any]:
        # --eval-only evaluates MODEL.WEIGHTS as given, never OUTPUT_DIR's last_checkpoint
        resume = not args.eval_only
        return {"eval_only": args.eval_only, "resume": resume, "register_coco": args.register_coco}


@CLUSTER_JOB_REGISTRY.register()
class LinearJob(_PerGpuBatchJob):
    """ImageNet linear classification of a frozen pretrained backbone (``tools/train_linear.py`` in every
    task): ``--config-file soco/configs/linear/Base-Linear.yaml MODEL.WEIGHTS ... LINEAR.DATA.TRAIN ...
    LINEAR.DATA.VAL ... OUTPUT_DIR ...``."""

    NAME = "linear"
    HELP = "linear classification of frozen pretrained weights on N nodes x G GPUs, requeued"
    ENTRY = linear_entry


@CLUSTER_JOB_REGISTRY.register()
class ProposalsJob:
    """Selective search as a job array (one shard per task, only the shards not complete), then the two
    filter steps as a job that starts when the array has succeeded."""

    NAME = "proposals"
    HELP = "generate proposals as a job array, then filter them (re-run: only unfinished shards)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--image-root", required=True, help="ImageNet tree, folder of images or train_map.txt")
        add("--output", required=True, type=Path, help="raw output folder (one subfolder per shard)")
        add("--num-shards", type=int, required=True, help="array tasks (images are dealt round-robin)")
        add("--workers", type=int, default=None, help="processes per task (default: --cpus-per-task)")
        add("--backend", default="reference")
        add("--max-size", type=int, default=None)
        add("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
        add("--array-parallelism", type=int, default=256, help="array tasks running at once")
        add("--strategy", default="ratio3size0308")
        add("--filtered-json", type=Path, default=None, help="default: train_<strategy>.json beside --output")
        add("--post-json", type=Path, default=None, help="default: train_<strategy>post.json")
        add("--store", type=Path, default=None, help="also write the compact proposal store")
        add("--no-filter", action="store_true", help="only (re-)generate the shards")

    @staticmethod
    def submit(args: argparse.Namespace) -> list:
        output = args.output.resolve()  # absolute paths: the jobs may start in another folder
        resources = resources_from_args(args, output / "submitit", "soco-proposals", cpus=8)
        resources.array_parallelism = args.array_parallelism
        todo = incomplete_shard_ids(output, args.num_shards)
        settings = {
            "image_root": str(Path(args.image_root).resolve()), "output": str(output),
            "backend": args.backend, "workers": args.workers or resources.cpus_per_task,
            "num_shards": args.num_shards, "max_size": args.max_size, "chunk_size": args.chunk_size,
        }  # fmt: skip
        executor = resources.executor()
        jobs = executor.map_array(generate_array_shard, todo, [settings] * len(todo)) if todo else []
        logger.info("%d of %d shards to generate: %s", len(todo), args.num_shards, todo)
        if args.no_filter:
            return jobs
        filtered, post = default_json_paths(output, args.strategy)
        filtered, post = (args.filtered_json or filtered).resolve(), (args.post_json or post).resolve()
        store = str(args.store.resolve()) if args.store else None
        filter_args = (str(output), args.strategy, str(filtered), str(post), store)
        dependency = None
        if jobs and executor.cluster == "slurm":
            dependency = f"afterok:{jobs[0].job_id.split('_')[0]}"  # the whole array
        else:
            for job in jobs:  # local runs have no dependencies: wait here (raises if a shard failed)
                job.result()
        filter_executor = resources.executor(name="soco-proposals-filter", dependency=dependency)
        filter_job = filter_executor.submit(run_filter_steps, *filter_args)
        logger.info("filter job %s%s", filter_job.job_id, f" after {dependency}" if dependency else "")
        return [*jobs, filter_job]


class BenchmarkTask(submitit.helpers.Checkpointable):
    """The transfer benchmark in one task; requeued, it skips the finished runs and resumes the cut one."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def __call__(self) -> dict[str, Any]:
        return run_benchmark(spec_from_args(self.args))


@CLUSTER_JOB_REGISTRY.register()
class TransferBenchmarkJob:
    """The multi-seed transfer benchmark (``tools/benchmark_transfer.py``) as one job on one node: its
    fine-tunings run one after the other, each on the node's ``--num-gpus`` GPUs (0: on the CPU)."""

    NAME = "benchmark"
    HELP = "fine-tune every (weights, seed) and tabulate AP mean / std (re-run: only unfinished runs)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_benchmark_arguments(parser)

    @staticmethod
    def submit(args: argparse.Namespace) -> list:
        args.output_dir = args.output_dir.resolve()  # absolute paths: the job may start in another folder
        plan_runs(spec_from_args(args))  # bad input fails here, before anything is queued
        resources = resources_from_args(args, args.output_dir / "submitit", "soco-benchmark", cpus=10)
        resources.gpus_per_node = args.num_gpus
        job = resources.executor().submit(BenchmarkTask(args))
        logger.info("submitted benchmark job %s, output %s", job.job_id, args.output_dir)
        return [job]
