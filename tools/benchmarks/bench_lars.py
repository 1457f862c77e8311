#!/usr/bin/env python
"""LARS step time, ``torch._foreach_*`` kernels vs one parameter at a time, on a real model's parameters.

The model of the config (default: SoCo R50-FPN, the online network's trainable parameters in LARS's two
groups, as training builds them) gets random gradients; the two variants then step in turn (so that a
change of load on a shared machine hits both alike), ``--steps`` timed steps each after ``--warmup``
untimed ones. The median step time and the speed-up are printed.

    python tools/benchmarks/bench_lars.py [--config soco/configs/SoCo_FPN_100ep.yaml] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from detectron2.modeling import build_model

from soco.engine.pretrain import load_pretrain_cfg
from soco.solver import build_optimizer

REPO = Path(__file__).resolve().parents[2]


def time_step(optimizer: torch.optim.Optimizer, device: str) -> float:
    """Seconds of one ``optimizer.step()``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_pretrain_cfg(args.config, ["MODEL.DEVICE", args.device])
    model = build_model(cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device=args.device).manual_seed(0)
    for param in trainable:
        param.grad = torch.randn(param.shape, device=args.device, generator=generator) * 1e-3
    optimizers = {}
    for foreach in (False, True):
        cfg.defrost()
        cfg.SOLVER.LARS.FOREACH = foreach
        optimizers[foreach] = build_optimizer(cfg, model)  # both step the same parameters (timing only)
    times: dict[bool, list[float]] = {False: [], True: []}
    for step in range(args.warmup + args.steps):
        for foreach, optimizer in optimizers.items():
            seconds = time_step(optimizer, args.device)
            if step >= args.warmup:
                times[foreach].append(seconds)
    results = {foreach: statistics.median(values) for foreach, values in times.items()}
    numel = sum(p.numel() for p in trainable)
    print(
        f"{Path(args.config).stem} on {args.device} ({torch.get_num_threads()} CPU threads): "
        f"{len(trainable)} parameter tensors, {numel / 1e6:.1f} M values, median of {args.steps} steps"
    )
    print("| LARS | step ms | speed-up |")
    print("|---|---|---|")
    for foreach, seconds in results.items():
        name = "foreach" if foreach else "per parameter"
        print(f"| {name} | {seconds * 1e3:.1f} | {results[False] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
