#!/usr/bin/env python
"""`make demo`: the whole pipeline on real photos, on CPU.

real photos -> selective-search proposals -> filter + post-fix -> SoCo FPN pretraining (tiny) with online
probes (object-level and image-level accuracy, plotted to probes.png) -> conversion to Detectron2 -> the same
for a tiny MoCo v2 with the same budget -> transfer benchmark: Mask R-CNN from SoCo, MoCo v2 and random init,
several seeds each, the same parts frozen for every init (backbone, FPN and box head by default), mean,
std and 95 % interval of box and mask AP. Val objects are never train objects (split by source photo).
Every step is printed as the command that runs it; artifacts land in --output (default demo_output/), which
each run empties first (an earlier demo run's folder is deleted; any other non-empty folder is refused).
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
        help="benchmark modes: frozen (the --freeze parts, the same for every init) and/or full",
    )
    parser.add_argument(
        "--freeze",
        help="parts frozen in the frozen mode, comma-separated (default backbone,fpn,box_head)",
    )
    parser.add_argument("--backbone-only", action="store_true", default=None,
                        help="transfer only the backbone of every weights file")  # fmt: skip
    parser.add_argument("--no-mocov2", dest="mocov2", action="store_false", default=None,
                        help="leave out the MoCo v2 pretraining and its benchmark row")  # fmt: skip
    args = parser.parse_args()
    settings = DemoSettings.quick(args.output) if args.quick else DemoSettings(output=args.output)
    options = ("workers", "pretrain_iters", "probe_period", "finetune_iters", "seeds", "mocov2",
               "backbone_only")  # fmt: skip
    for name in options:
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.transfer_modes:
        settings.transfer_modes = tuple(args.transfer_modes)
    if args.freeze:
        settings.freeze = tuple(args.freeze.split(","))
    run_demo(settings)


if __name__ == "__main__":
    main()
