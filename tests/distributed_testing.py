"""Run a test function in two CPU processes joined by a gloo process group (for cross-process code paths)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, fn: Callable, init_file: str, world_size: int, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable, tmp_path: Path, *args, world_size: int = 2) -> None:
    """Call ``fn(*args)`` in ``world_size`` spawned processes; a failure in any of them fails the test.

    ``fn`` must be a module-level function (it is pickled into the children).
    """
    init_file = tmp_path / "process_group_init"
    mp.spawn(_worker, args=(fn, str(init_file), world_size, args), nprocs=world_size, join=True)
