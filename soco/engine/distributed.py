"""Multi-process training: DDP on CPU and GPU, and the process group of every way a job is started.

:func:`launch_from_args` is what the tools call instead of Detectron2's ``launch``. Under ``torchrun`` (or
``torch.distributed.launch``, Kubernetes' PyTorchJob, TorchX: whatever sets ``RANK`` and ``WORLD_SIZE``)
this process joins the job's process group (``env://``); otherwise it starts ``--num-gpus`` processes on
this machine as ``launch`` does. Either way the backend follows ``MODEL.DEVICE`` (NCCL on CUDA, else gloo)
and Detectron2's per-machine group (``comm.get_local_rank()``, ``comm.get_local_size()``) is set up.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import create_ddp_model, default_argument_parser
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm
from torch import nn

logger = logging.getLogger(__name__)

#: The norm names that synchronize CPU processes too (Detectron2's 2-D one, soco's 1-D one).
CPU_SYNC_NORM = "naiveSyncBN"


def check_sync_norms_can_run(model: nn.Module, device: torch.device) -> None:
    """Fail early, naming the modules, when ``nn.SyncBatchNorm`` would meet CPU tensors in several processes.

    torch's SyncBatchNorm only synchronizes GPU tensors and raises at the first training step otherwise;
    ``naiveSyncBN`` (Detectron2's ``NaiveSyncBatchNorm``, soco's ``NaiveSyncBatchNorm1d``) runs everywhere.
    """
    if device.type == "cuda" or comm.get_world_size() == 1:
        return
    names = [name for name, module in model.named_modules() if isinstance(module, nn.SyncBatchNorm)]
    if names:
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise ValueError(
            f"SyncBN needs CUDA, but this {comm.get_world_size()}-process run is on {device}: {shown}. "
            f"Use {CPU_SYNC_NORM!r} (or 'BN') for MODEL.RESNETS.NORM, MODEL.FPN.NORM, "
            "MODEL.ROI_BOX_HEAD.NORM and the method's MLP_NORM (SOCO.HEAD, SWAV, MOCO)"
        )


def share_cpu_threads(device: torch.device) -> None:
    """Give each of this machine's CPU training processes its share of the cores, as torchrun does.

    Every process's OpenMP threads default to all cores; several processes then spin against each other
    (a tiny 2-process run measured 67 s per iteration instead of 1.5 s). Nothing changes on GPU, for one
    process, or when ``OMP_NUM_THREADS`` is set.
    """
    if device.type != "cpu" or comm.get_world_size() == 1 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // comm.get_local_size())
    torch.set_num_threads(threads)
    logger.info("%d CPU thread(s) for each of the %d local processes", threads, comm.get_local_size())


def wrap_ddp(model: nn.Module, find_unused_parameters: bool) -> nn.Module:
    """``DistributedDataParallel`` over this process group (the model itself on one process).

    Detectron2's ``create_ddp_model`` always passes ``device_ids=[local rank]``, which DDP refuses for a
    CPU module; on CPU, ``device_ids`` is left out. On a GPU it is the model's own device, which is not the
    local rank where each process sees only its GPU (torchrun ``--virtual-local-rank``, or one
    ``CUDA_VISIBLE_DEVICES`` per task). Buffers are not broadcast: the target (momentum) network's BN
    statistics come from its own forward passes on every process.
    """
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return create_ddp_model(
        model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
    )


#: Detectron2's launch options (``default_argument_parser``): a job started by torchrun gets them from its
#: environment, so setting them as well is refused.
LAUNCH_OPTIONS = {
    "num_gpus": "--num-gpus",
    "num_machines": "--num-machines",
    "machine_rank": "--machine-rank",
    "dist_url": "--dist-url",
}


@dataclass(frozen=True)
class JobEnvironment:
    """This process's place in a job whose launcher set torchrun's variables."""

    rank: int  # RANK
    world_size: int  # WORLD_SIZE
    local_rank: int  # LOCAL_RANK: the process on its machine (its GPU)
    local_world_size: int  # LOCAL_WORLD_SIZE: processes per machine
    machine_rank: int  # GROUP_RANK

    @property
    def num_machines(self) -> int:
        return self.world_size // self.local_world_size


def job_environment(environ: Mapping[str, str] = os.environ) -> JobEnvironment | None:
    """The torchrun-style variables of this process, or ``None`` when neither ``RANK`` nor ``WORLD_SIZE``
    is set (the process was not started by such a launcher).

    Without ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (a PyTorchJob running one process per pod) each process
    is alone on its machine; ``GROUP_RANK`` defaults to ``RANK // LOCAL_WORLD_SIZE``. Raises ``ValueError``
    naming the variables when they are incomplete, not integers, or not machines of equally many processes
    with consecutive ranks (which Detectron2's per-machine group assumes).
    """
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in environ]
    if missing:
        raise ValueError(f"torchrun-style environment without {missing}: a launcher sets all of them")
    if ("LOCAL_RANK" in environ) != ("LOCAL_WORLD_SIZE" in environ):
        raise ValueError("torchrun-style environment with only one of LOCAL_RANK and LOCAL_WORLD_SIZE")
    one_per_machine = "LOCAL_RANK" not in environ
    names = ["RANK", "WORLD_SIZE"] + ([] if one_per_machine else ["LOCAL_RANK", "LOCAL_WORLD_SIZE"])
    try:
        values = {name: int(environ[name]) for name in names}
        rank, world_size = values["RANK"], values["WORLD_SIZE"]
        local_rank, local_world_size = values.get("LOCAL_RANK", 0), values.get("LOCAL_WORLD_SIZE", 1)
        machine_rank = int(environ.get("GROUP_RANK", rank // max(local_world_size, 1)))
    except ValueError as error:
        shown = {name: environ.get(name) for name in [*names, "GROUP_RANK"] if name in environ}
        raise ValueError(f"torchrun-style variables must be integers: {shown}") from error
    shown = (
        f"RANK={rank} WORLD_SIZE={world_size} LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_world_size} "
        f"GROUP_RANK={machine_rank}"
    )
    if not 0 <= rank < world_size or not 0 <= local_rank < local_world_size:
        raise ValueError(f"torchrun-style variables out of range: {shown}")
    if world_size % local_world_size or rank // local_world_size != machine_rank:
        raise ValueError(
            f"{shown}: every machine must run LOCAL_WORLD_SIZE processes with consecutive ranks "
            "(Detectron2's per-machine process group); start the same --nproc-per-node on every node"
        )
    return JobEnvironment(rank, world_size, local_rank, local_world_size, machine_rank)


def config_device(config_file: str, opts: Sequence[str]) -> str:
    """``MODEL.DEVICE`` of a yacs config file (``_BASE_`` files included) and its ``KEY VALUE`` overrides,
    read before any process starts; Detectron2's default when neither sets it."""
    overrides = dict(zip(opts[0::2], opts[1::2], strict=False))
    if "MODEL.DEVICE" in overrides:
        return str(overrides["MODEL.DEVICE"])
    if config_file:
        model = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True).get("MODEL") or {}
        if model.get("DEVICE"):
            return str(model["DEVICE"])
    return get_cfg().MODEL.DEVICE


def process_group_backend(device: str | torch.device) -> str:
    """NCCL for a CUDA ``MODEL.DEVICE``, gloo otherwise (Detectron2's ``launch`` looks at whether the
    machine has a GPU instead, which puts a CPU run on a GPU machine on NCCL)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _join_process_group(
    backend: str, init_method: str, rank: int, world_size: int, local_rank: int, local_world_size: int,
    timeout: timedelta,
) -> None:  # fmt: skip
    """What Detectron2's ``launch`` workers do: this process's GPU (NCCL), the global group, the
    per-machine group, then a barrier (a slow first collective would otherwise hit the timeout)."""
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process {local_rank} of {local_world_size} on this machine has no GPU: "
                f"{torch.cuda.device_count()} visible (MODEL.DEVICE is CUDA; use 'cpu' to train on the CPU)"
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, init_method=init_method, world_size=world_size, rank=rank,
                                timeout=timeout)  # fmt: skip
    except Exception:
        logger.error("process %d of %d could not join the process group at %s", rank, world_size, init_method)
        raise
    comm.create_local_process_group(local_world_size)
    comm.synchronize()
    logger.info(
        "process %d of %d (%d of %d on machine %d) joined %s (%s)",
        rank, world_size, local_rank, local_world_size, rank // local_world_size, init_method, backend,
    )  # fmt: skip


def init_process_group_from_env(
    device: str | torch.device, timeout: timedelta = DEFAULT_TIMEOUT
) -> JobEnvironment:
    """Join the process group that torchrun-style variables describe (``env://``), with the backend of
    ``device`` (``MODEL.DEVICE``); nothing to join for a world of one process. Returns the environment."""
    environment = job_environment()
    if environment is None:
        raise RuntimeError("cannot join a process group: neither RANK nor WORLD_SIZE is set")
    if environment.world_size > 1:
        _join_process_group(
            process_group_backend(device), "env://", environment.rank, environment.world_size,
            environment.local_rank, environment.local_world_size, timeout,
        )  # fmt: skip
    return environment


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--local-rank`` (or ``--local_rank``), which ``torch.distributed.launch`` passes to each process
    unless given ``--use-env``; :func:`launch_from_args` checks it against ``LOCAL_RANK``."""
    parser.add_argument(
        "--local-rank", "--local_rank", dest="local_rank", type=int, default=None,
        help="set by torch.distributed.launch (torchrun sets LOCAL_RANK instead); not for users",
    )  # fmt: skip


def explicit_launch_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> list[str]:
    """The flags of :data:`LAUNCH_OPTIONS` that ``argv`` (default: the command line) gives, whatever the
    value (``--num-gpus 1`` included; argparse's abbreviations too): ``argv`` parsed again with the
    defaults of those options replaced by a marker."""
    unset = object()
    defaults = {dest: parser.get_default(dest) for dest in LAUNCH_OPTIONS}
    parser.set_defaults(**dict.fromkeys(LAUNCH_OPTIONS, unset))
    try:
        given, _ = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    finally:
        parser.set_defaults(**defaults)
    return [flag for dest, flag in LAUNCH_OPTIONS.items() if getattr(given, dest, unset) is not unset]


def release_process_group() -> None:
    """Leave the process group once this process's work is done, with nothing left holding its groups.

    A gloo worker thread drops a finished collective (and so its tensors, which takes the GIL) a moment
    after the caller has its result. If that happens while the interpreter shuts down, Python ends the
    thread with ``pthread_exit`` and the process aborts ("terminate called without an active exception",
    SIGABRT) after its work succeeded. Destroying the groups first joins those threads while Python still
    runs; for that, the references Detectron2's ``comm`` caches (its gloo group, the per-machine group)
    are dropped too, and unreachable objects collected (a finished trainer's DDP model in a reference
    cycle holds the group), else ``destroy_process_group`` leaves the group alive until shutdown.
    """
    if not dist.is_initialized():
        return
    gc.collect()
    comm._get_global_gloo_group.cache_clear()
    comm.create_local_process_group.cache_clear()
    comm._LOCAL_PROCESS_GROUP = None
    dist.destroy_process_group()


def _spawned_worker(
    local_rank: int, main_func: Callable[..., Any], args: tuple, backend: str, num_machines: int,
    machine_rank: int, num_local: int, dist_url: str, timeout: timedelta,
) -> None:  # fmt: skip
    world_size, rank = num_machines * num_local, machine_rank * num_local + local_rank
    _join_process_group(backend, dist_url, rank, world_size, local_rank, num_local, timeout)
    main_func(*args)
    release_process_group()


def launch_processes(
    main_func: Callable[..., Any],
    num_processes_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: tuple = (),
    device: str | torch.device = "cpu",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Detectron2's ``launch`` (same arguments: ``main_func(*args)`` in ``num_processes_per_machine``
    processes on this machine, the machine ``machine_rank`` of ``num_machines``), with the backend of
    ``device`` (``MODEL.DEVICE``) and the groups released after ``main_func`` returns
    (:func:`release_process_group`). One process in all: ``main_func`` runs here and its result is
    returned (``None`` otherwise)."""
    if num_processes_per_machine * num_machines <= 1:  # --num-gpus 0 (a CPU run) too: one process, this one
        return main_func(*args)
    if dist_url == "auto":
        if num_machines > 1:
            raise ValueError(
                "--dist-url auto finds a port on this machine only: give tcp://HOST:PORT of machine 0"
            )
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    settings = (process_group_backend(device), num_machines, machine_rank, num_processes_per_machine)
    mp.start_processes(
        _spawned_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, args, *settings, dist_url, timeout),
        daemon=False,
    )
    return None


def launch_from_args(
    main_func: Callable[[argparse.Namespace], Any],
    args: argparse.Namespace,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
    device: str | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``main_func(args)`` in every process of this job: the tools' replacement for Detectron2's
    ``launch(main_func, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, (args,))``.

    * torchrun-style environment (:func:`job_environment`): join its process group and run ``main_func``
      here. ``args.num_gpus``, ``num_machines``, ``machine_rank`` and ``dist_url`` are set from the
      environment (what ``default_setup`` logs); giving any of them on the command line as well is an
      error (``parser`` and ``argv`` tell which were given; default: Detectron2's parser, ``sys.argv``).
    * otherwise: ``launch``'s behaviour: ``args.num_gpus`` processes on this machine (``dist_url``
      ``auto``: a free port on localhost, one machine only), or ``main_func`` in this process for one.

    The backend is that of ``device`` (default: ``MODEL.DEVICE`` of ``args.config_file`` and
    ``args.opts``). Returns ``main_func``'s result when it ran alone, else ``None``.
    """
    device = device or config_device(args.config_file, args.opts)
    environment = job_environment()
    local_rank = getattr(args, "local_rank", None)
    if environment is None:
        if local_rank is not None:
            raise ValueError(
                f"--local-rank {local_rank} without RANK/WORLD_SIZE in the environment: it is set by "
                "torch.distributed.launch; to start processes yourself use --num-gpus"
            )
        return launch_processes(
            main_func, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, (args,), device,
            timeout,
        )  # fmt: skip
    given = explicit_launch_options(parser or default_argument_parser(), argv)
    if given:
        raise ValueError(
            f"{' '.join(given)} given inside a torchrun-style job (RANK={environment.rank}, "
            f"WORLD_SIZE={environment.world_size}): the launcher already decided the processes and the "
            "rendezvous; drop those flags (use torchrun's --nproc-per-node, --nnodes, --node-rank, "
            "--rdzv-endpoint) or start without torchrun"
        )
    if local_rank is not None and local_rank != environment.local_rank:
        raise ValueError(f"--local-rank {local_rank} differs from LOCAL_RANK={environment.local_rank}")
    init_process_group_from_env(device, timeout)
    args.num_gpus, args.num_machines = environment.local_world_size, environment.num_machines
    args.machine_rank, args.dist_url = environment.machine_rank, "env://"
    result = main_func(args)
    if dist.is_initialized():
        result = None  # a returned trainer's DDP model would hold the group past release_process_group
        release_process_group()
    return result
