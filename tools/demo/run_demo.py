#!/usr/bin/env python
"""`make demo`: the whole pipeline on real photos, on CPU.

real photos -> selective-search proposals -> filter + post-fix -> SoCo FPN pretraining (tiny) with online
probes (object-level and image-level accuracy, plotted to probes.png) -> conversion to Detectron2 -> the same
for a tiny MoCo v2 with the same budget -> transfer benchmark: Mask R-CNN from SoCo, MoCo v2 and random init,
several seeds each (frozen backbone, FPN and box head by default), mean and std of box and mask AP.
Every step is printed as the command that runs it; artifacts land in --output (default demo_output/).
"""

import argparse
from pathlib import Path

from pipeline import DemoSettings, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="artifacts folder")
    parser.add_argument("--quick", action="store_true", help="a few iterations per stage (the CI version)")
    parser.add_argument("--workers", type=int, help="processes for proposals and data loading")
    parser.add_argument("--pretrain-iters", type=int, help="SoCo pretraining iterations")
    parser.add_argument("--probe-period", type=int, help="probe evaluation period (iterations)")
    parser.add_argument("--finetune-iters", type=int, help="Mask R-CNN fine-tuning iterations (each run)")
    parser.add_argument("--seeds", type=int, help="fine-tuning seeds per initialisation")
    parser.add_argument(
        "--transfer-modes",
        nargs="+",
        choices=("frozen", "full"),
        help="benchmark modes: frozen (backbone, FPN and box head frozen where pretrained) and/or full",
    )
    parser.add_argument("--no-mocov2", dest="mocov2", action="store_false", default=None,
                        help="leave out the MoCo v2 pretraining and its benchmark row")  # fmt: skip
    args = parser.parse_args()
    settings = DemoSettings.quick(args.output) if args.quick else DemoSettings(output=args.output)
    options = ("workers", "pretrain_iters", "probe_period", "finetune_iters", "seeds", "mocov2")
    for name in options:
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.transfer_modes:
        settings.transfer_modes = tuple(args.transfer_modes)
    run_demo(settings)


if __name__ == "__main__":
    main()
