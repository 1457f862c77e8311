#!/usr/bin/env python
"""`make demo`: the whole pipeline on real photos, on CPU.

real photos -> selective-search proposals -> filter + post-fix -> SoCo FPN pretraining (tiny) ->
conversion to Detectron2 -> Mask R-CNN fine-tuning from SoCo weights and from scratch -> COCO evaluation.
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
    parser.add_argument("--finetune-iters", type=int, help="Mask R-CNN fine-tuning iterations (each run)")
    args = parser.parse_args()
    settings = DemoSettings.quick(args.output) if args.quick else DemoSettings(output=args.output)
    for name in ("workers", "pretrain_iters", "finetune_iters"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    run_demo(settings)


if __name__ == "__main__":
    main()
