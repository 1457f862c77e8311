#!/usr/bin/env python
"""Linear classification of several weights under both protocols (reference, cached_features) and seeds, on
a small ImageFolder probe set (the demo's ``data/probe_images``), on the CPU; a markdown table of the results.

    python tools/benchmarks/bench_linear.py --probe demo_output/data/probe_images --output out/bench_linear \
        --weights mocov2=demo_output/pretrain_mocov2/model_final.pth random= [--seeds 0 1 2] [--epochs 30]

Each (weights, protocol, seed) trains ``soco/configs/tiny/Linear.yaml`` (ResNet-18, batch 16,
lr 30 x 16 / 256) for ``--epochs`` epochs with lr x0.1 at 60 % and 80 % of them, 96 px crops of 110 px-resized
images (the demo probes' size), in ``OUTPUT/<name>_<protocol>_seed<seed>``; a folder that already holds
``linear_results.json`` is reused, not retrained (``--setting swav``: ``..._swav_seed<seed>``).
``name=`` (no path) is the random-initialisation baseline.
Seconds per epoch: the mean step time in ``metrics.json`` x iterations per epoch (training steps only;
evaluation and, for cached features, the one-off extraction come on top).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch

from soco.engine.linear import run_linear
from soco.engine.linear.run import RESULTS_FILE
from soco.utils import read_metrics

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "soco" / "configs" / "tiny" / "Linear.yaml")
PROTOCOLS = ("reference", "cached_features")
#: ``--setting``: the optimiser overrides of each published setting (MoCo's is the tiny config's own).
SETTINGS = {
    "moco": [],
    "swav": [
        "SOLVER.BASE_LR", "0.3", "SOLVER.WEIGHT_DECAY", "1e-6", "SOLVER.WEIGHT_DECAY_1D", "1e-6",
        "LINEAR.LR_SCHEDULE", "cosine",
    ],
}  # fmt: skip


def _opts(
    weights: str, probe: str, protocol: str, setting: str, seed: int, epochs: int, output: Path
) -> list[str]:
    init = ["MODEL.WEIGHTS", weights] if weights else ["LINEAR.RANDOM_INIT", "True"]
    steps = f"({int(epochs * 0.6)}, {int(epochs * 0.8)})"
    return [
        *init, "LINEAR.DATA.TRAIN", f"{probe}/train", "LINEAR.DATA.VAL", f"{probe}/val",
        "LINEAR.PROTOCOL", protocol, "SEED", str(seed),
        "SOLVER.EPOCHS", str(epochs), "LINEAR.STEP_EPOCHS", steps,
        "LINEAR.EVAL_PERIOD_EPOCHS", str(epochs), "LINEAR.CHECKPOINT_PERIOD_EPOCHS", str(epochs),
        "LINEAR.DATA.CROP_SIZE", "96", "LINEAR.DATA.RESIZE_SIZE", "110", "OUTPUT_DIR", str(output),
        *SETTINGS[setting],
    ]  # fmt: skip


def _run_args(opts: list[str]) -> argparse.Namespace:
    return argparse.Namespace(
        config_file=TINY, opts=opts, resume=False, num_gpus=1, num_machines=1, machine_rank=0, dist_url="auto"
    )


def _seconds_per_epoch(run: Path, iters_per_epoch: int) -> float:
    times = [r["time"] for r in read_metrics(run / "metrics.json") if "time" in r]
    return statistics.fmean(times) * iters_per_epoch if times else float("nan")


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (n=1)"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f} (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probe", required=True, help="ImageFolder root with train/ and val/")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument(
        "--weights", nargs="+", required=True, metavar="NAME=PATH", help="NAME= : random init"
    )
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--setting",
        choices=sorted(SETTINGS),
        default="moco",
        help="moco: lr 30 x batch / 256, step; swav: lr 0.3 x batch / 256, wd 1e-6, cosine",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in args.weights:
        name, _, path = spec.partition("=")
        for protocol in args.protocols:
            top1, top5, per_epoch = [], [], []
            for seed in args.seeds:
                setting = "" if args.setting == "moco" else f"_{args.setting}"
                run = args.output / f"{name}_{protocol}{setting}_seed{seed}"
                if not (run / RESULTS_FILE).is_file():
                    opts = _opts(path, args.probe, protocol, args.setting, seed, args.epochs, run)
                    run_linear(_run_args(opts))
                result = json.loads((run / RESULTS_FILE).read_text())
                top1.append(result["top1"])
                top5.append(result["top5"])
                per_epoch.append(_seconds_per_epoch(run, result["iterations"] // round(result["epochs"])))
            rows.append(
                f"| {name} | {protocol} | {_mean_std(top1)} | {_mean_std(top5)} | "
                f"{statistics.fmean(per_epoch):.2f} |"
            )
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{args.setting} setting, {args.epochs} epochs, seeds {args.seeds}; load average {load}\n")
    print("| weights | protocol | top-1 (%) | top-5 (%) | s / epoch (training steps) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
