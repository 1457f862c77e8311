"""Multi-process training: DDP on CPU and GPU, and process groups set up from a job's environment."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from detectron2.engine import create_ddp_model
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
    CPU module; on CPU, ``device_ids`` is left out. Buffers are not broadcast: the target (momentum)
    network's BN statistics come from its own forward passes on every process.
    """
    device = next(model.parameters()).device
    device_ids = [comm.get_local_rank()] if device.type == "cuda" else None
    return create_ddp_model(
        model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
    )


def init_process_group_from_env(timeout: timedelta = timedelta(minutes=30)) -> None:
    """Join the process group described by torchrun-style variables (``MASTER_ADDR``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), as Detectron2's ``launch`` workers do:
    NCCL with CUDA (this process on GPU ``LOCAL_RANK``), else gloo, and Detectron2's per-machine group.

    Nothing happens for a world of one process.
    """
    missing = [key for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if key not in os.environ]
    if missing:
        raise RuntimeError(f"cannot join a process group: environment variables {missing} are not set")
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size == 1:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo",
        init_method="env://",
        world_size=world_size,
        rank=int(os.environ["RANK"]),
        timeout=timeout,
    )
    comm.create_local_process_group(local_world_size)
    comm.synchronize()
    logger.info(
        "process %d of %d (local %d of %d) joined %s:%s",
        dist.get_rank(),
        world_size,
        local_rank,
        local_world_size,
        os.environ["MASTER_ADDR"],
        os.environ["MASTER_PORT"],
    )
