#!/usr/bin/env python
"""LARS step time, ``torch._foreach_*`` kernels vs one parameter at a time, on a real model's parameters.

The model of the config (default: SoCo R50-FPN, the online network's trainable parameters in LARS's two
groups, as training builds them) gets random gradients; each variant then runs ``--steps`` optimizer
steps after ``--warmup`` untimed ones. The median step time and the speed-up are printed.

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


def time_steps(optimizer: torch.optim.Optimizer, steps: int, warmup: int, device: str) -> float:
    """Median seconds of one ``optimizer.step()``."""
    times = []
    for step in range(warmup + steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    results = {}
    for foreach in (False, True):
        cfg.defrost()
        cfg.SOLVER.LARS.FOREACH = foreach
        state = [p.detach().clone() for p in trainable]
        results[foreach] = time_steps(build_optimizer(cfg, model), args.steps, args.warmup, args.device)
        with torch.no_grad():
            for param, saved in zip(trainable, state, strict=True):
                param.copy_(saved)
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
