#!/usr/bin/env python
"""What pre-emption handling costs: the per-iteration stop check, and the checkpoint it writes.

1. The check :class:`soco.engine.preemption.PreemptionHook` runs after every step: an all-reduce (MAX) of
   a one-element flag on a gloo group, timed over ``--iterations`` calls in ``--processes`` CPU processes
   (gloo over loopback; on a cluster the same group runs over the nodes' network).
2. The save of a complete checkpoint of a real model (default: SoCo R50-FPN of
   ``soco/configs/SoCo_FPN_100ep.yaml``, built on the CPU: online and target networks, feature queues,
   LARS momentum buffers after one step), with :class:`soco.engine.trainer.AtomicCheckpointer` (temporary
   file, fsync, rename) and with Detectron2's ``DetectionCheckpointer`` (written in place), in turn,
   ``--saves`` times each, into ``--output`` (default: a temporary folder).

    python tools/benchmarks/bench_preemption.py [--iterations 1000] [--saves 3] [--config CONFIG]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from soco.engine.preemption import PreemptionHook
from soco.engine.pretrain import load_pretrain_cfg
from soco.engine.trainer import AtomicCheckpointer
from soco.solver import build_optimizer

REPO = Path(__file__).resolve().parents[2]


def _time_checks(rank: int, world_size: int, init_file: str, iterations: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    hook = PreemptionHook(checkpointer=None, max_iter=iterations + 1)
    hook.trainer = SimpleNamespace(iter=0)
    hook.before_train()  # creates the gloo group, checks once
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        stopped = hook._agreed()
        seconds.append(time.perf_counter() - start)
        assert not stopped
    hook.after_train()
    if rank == 0:
        torch.save(seconds, out)
    dist.destroy_process_group()


def time_stop_check(processes: int, iterations: int) -> list[float]:
    """Seconds of each of ``iterations`` stop checks on process 0 of ``processes``."""
    with tempfile.TemporaryDirectory() as folder:
        init_file, out = str(Path(folder) / "init"), str(Path(folder) / "seconds.pt")
        mp.spawn(_time_checks, args=(processes, init_file, iterations, out), nprocs=processes, join=True)
        return torch.load(out)


def time_saves(config: str, saves: int, output: Path) -> dict[str, list[float]]:
    """Seconds of each save of the config's model and optimizer, per checkpointer; the file size in MB."""
    cfg = load_pretrain_cfg(config, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.full_like(param, 1e-3)
    optimizer.step()  # allocates the momentum buffers a real checkpoint holds
    checkpointers = {
        "AtomicCheckpointer": AtomicCheckpointer(model, str(output), optimizer=optimizer),
        "DetectionCheckpointer": DetectionCheckpointer(model, str(output), optimizer=optimizer),
    }
    seconds: dict[str, list[float]] = {name: [] for name in checkpointers}
    for index in range(saves):
        for name, checkpointer in checkpointers.items():  # in turn: load changes hit both alike
            start = time.perf_counter()
            checkpointer.save(f"model_{index:07d}", iteration=index)
            seconds[name].append(time.perf_counter() - start)
    size_mb = (output / "model_0000000.pth").stat().st_size / 2**20
    parameters = sum(p.numel() for p in model.parameters())
    print(f"checkpoint of {config}: {parameters / 1e6:.1f} M parameters, {size_mb:.0f} MB on disk")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--config", default=str(REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"))
    parser.add_argument("--output", type=Path, default=None, help="where the checkpoints go (default: tmp)")
    args = parser.parse_args()

    checks = time_stop_check(args.processes, args.iterations)
    micro = sorted(s * 1e6 for s in checks)
    print(
        f"stop check (gloo all-reduce, {args.processes} processes), {len(checks)} calls: median "
        f"{statistics.median(micro):.0f} us, mean {statistics.mean(micro):.0f} us, "
        f"95th percentile {micro[int(0.95 * len(micro))]:.0f} us, max {micro[-1]:.0f} us"
    )
    with tempfile.TemporaryDirectory() as folder:
        output = args.output or Path(folder)
        output.mkdir(parents=True, exist_ok=True)
        for name, seconds in time_saves(args.config, args.saves, output).items():
            shown = ", ".join(f"{s:.2f}" for s in seconds)
            median = statistics.median(seconds)
            print(f"{name}.save: median {median:.2f} s over {len(seconds)} saves ({shown})")


if __name__ == "__main__":
    main()
