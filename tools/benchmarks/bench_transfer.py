#!/usr/bin/env python
"""The transfer benchmark at `make bench` size: the demo's pipeline (real photos, tiny SoCo FPN and MoCo v2
pretraining with probes, the demo's sizes) followed by Mask R-CNN fine-tuning from SoCo, MoCo v2 and random
init, 3 seeds each, in both modes (backbone/FPN/box head frozen for every init, and full fine-tuning), for
150 iterations per run (the demo cuts that to 80 to fit in 10 minutes). Prints the demo's summary tables.

    python tools/benchmarks/bench_transfer.py [--output DIR] [--seeds 3] [--quick]

--quick and the full size write to different folders by default (soco_bench_transfer_quick / _full), so that
neither run finds, nor removes, the other's runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "demo"))  # the pipeline lives next to the demo's scripts

from pipeline import DemoSettings, format_summary, run_demo  # noqa: E402

BENCH_FINETUNE_ITERS = 150  # fine-tuning iterations per run; no 10-minute limit here, unlike the demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=None, help="runs and logs (default: per size)")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per initialisation")
    parser.add_argument("--quick", action="store_true", help="the demo's CI sizes, 2 seeds")
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    args.output = args.output or Path(tempfile.gettempdir()) / f"soco_bench_transfer_{size}"
    settings = DemoSettings.quick(args.output) if args.quick else DemoSettings(output=args.output)
    settings.seeds = 2 if args.quick else args.seeds
    if not args.quick:
        settings.finetune_iters = BENCH_FINETUNE_ITERS
    settings.transfer_modes = ("frozen", "full")
    # beside the output folder, which run_demo empties at its start
    log = args.output.with_name(f"{args.output.name}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream, contextlib.redirect_stdout(stream):
        summary = run_demo(settings)
    print(format_summary(settings, summary))
    print(
        f"\n{settings.pretrain_iters} pretraining iterations per method, "
        f"{settings.finetune_iters} fine-tuning iterations per run; "
        f"{summary['total_seconds']:.0f} s in all (steps logged in {log})"
    )


if __name__ == "__main__":
    main()
