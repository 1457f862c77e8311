"""Multi-seed transfer benchmark: fine-tune every (weights, seed) with tools/train_net.py and tabulate AP.

  python tools/benchmark_transfer.py --config-file detectron2_configs/demo/mask_rcnn_R18_FPN_demo.yaml \\
      --weights soco=demo_output/soco_d2.pkl --weights scratch= --seeds 3 \\
      [--freeze backbone,fpn,box_head] [--backbone-only] \\
      --register-coco demo_train train.json train/ --register-coco demo_val val.json val/ \\
      bench_output/ SOLVER.MAX_ITER 300

Each run is a tools/train_net.py process in OUTPUT_DIR/<NAME>/seed<k>/ (SEED k); run the command again
after a stop: finished runs (same settings, same weights content by sha256) are skipped, a run whose
weights file has changed is discarded and run again, a run with a last_checkpoint resumes (flagged).
Writes OUTPUT_DIR/results.json, results.md (per init: frozen parts, trainable parameters, runs, mean ±
std [95 % interval], per-seed values; a run without predictions counts as AP 0) and results.png.

One protocol for every row: --freeze PARTS sets the same MODEL.FREEZE_PARTS for every weights file; a
frozen part a file lacks stays at the seed's random initialisation (equal for every file) with its BN
statistics calibrated on MODEL.FREEZE_CALIBRATION_ITERS training batches. --backbone-only loads only the
backbone of every file, so that rows differ only there. Without --freeze, the config's own freezing
(MODEL.BACKBONE.FREEZE_AT) is what the report lists as frozen.
"""

from __future__ import annotations

import argparse
import logging

from soco.detection.benchmark import add_benchmark_arguments, run_benchmark, spec_from_args
from soco.detection.benchmark_report import results_markdown


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_benchmark_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_argument_parser().parse_args(argv)
    document = run_benchmark(spec_from_args(args))
    print(results_markdown(document))
    return document


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
