"""Run test code in CPU processes joined by a gloo process group (for cross-process code paths)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.utils import comm
from pretrain_testing import run_pretraining

from soco.data.build import build_pretrain_train_loader
from soco.engine.distributed import launch_processes, release_process_group
from soco.engine.hooks import unwrap_model
from soco.engine.pretrain import setup_pretrain_cfg


def _worker(rank: int, fn: Callable, init_file: str, world_size: int, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    fn(*args)
    release_process_group()  # else the process may abort at exit (see release_process_group)


def run_distributed(fn: Callable, tmp_path: Path, *args, world_size: int = 2) -> None:
    """Call ``fn(*args)`` in ``world_size`` spawned processes; a failure in any of them fails the test.

    ``fn`` must be a module-level function (it is pickled into the children).
    """
    init_file = tmp_path / "process_group_init"
    mp.spawn(_worker, args=(fn, str(init_file), world_size, args), nprocs=world_size, join=True)


def _pretrain_in_each_process(
    config_file: str, output_dir: str, overrides: list[str], run_options: dict
) -> None:
    """One process of :func:`launch_pretraining`: train, then save what the test compares."""
    torch.set_num_threads(1)
    trainer, values = run_pretraining(config_file, Path(output_dir), overrides, **run_options)
    model = unwrap_model(trainer.model)
    queues = {name: buf.clone() for name, buf in model.named_buffers() if name.endswith("features")}
    result = {"scalars": values, "queues": queues, "start_iter": trainer.start_iter}
    torch.save(result, _result_file(output_dir, comm.get_rank()))


def _result_file(output_dir: str | Path, rank: int) -> Path:
    return Path(output_dir) / f"test_result.rank{rank}.pt"


def launch_pretraining(
    config_file: str,
    output_dir: Path,
    overrides: list[str],
    world_size: int = 2,
    **run_options,
) -> list[dict]:
    """Pretrain on ``world_size`` CPU processes (gloo), as ``tools/pretrain_net.py --num-gpus N`` does
    (``run_options``: those of ``run_pretraining``); returns each rank's raw per-iteration scalars (rank
    0's are the all-process means Detectron2 logs), feature queues (name -> (L, D)) and start iteration.
    """
    args = (config_file, str(output_dir), overrides, run_options)
    launch_processes(_pretrain_in_each_process, world_size, args=args)
    return [torch.load(_result_file(output_dir, rank)) for rank in range(world_size)]


def _record_stream_in_each_process(config_file: str, overrides: list[str], batches: int, out: str) -> None:
    torch.set_num_threads(1)
    cfg = setup_pretrain_cfg(config_file, overrides + ["MODEL.DEVICE", "cpu"])
    loader = iter(build_pretrain_train_loader(cfg))
    torch.save([next(loader) for _ in range(batches)], Path(out) / f"stream.rank{comm.get_rank()}.pt")


def launch_data_stream(config_file: str, out: Path, overrides: list[str], batches: int, world_size: int = 2):
    """The first ``batches`` batches each of ``world_size`` processes draws: ``[rank][batch] -> dict``."""
    args = (config_file, overrides, batches, str(out))
    launch_processes(_record_stream_in_each_process, world_size, args=args)
    return [torch.load(out / f"stream.rank{rank}.pt") for rank in range(world_size)]


def biased_running_stats(model: torch.nn.Module) -> set[str]:
    """Detectron2's 2-D NaiveSyncBatchNorm updates ``running_var`` with the biased variance (and does not
    count batches) when it synchronizes, unlike BatchNorm2d on one process: those buffers differ by design.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, NaiveSyncBatchNorm)]
    return {f"{name}.{buffer}" for name in names for buffer in ("running_var", "num_batches_tracked")}
