"""Multi-seed transfer benchmark: fine-tune every (weights, seed) with tools/train_net.py and tabulate AP.

  python tools/benchmark_transfer.py --config-file detectron2_configs/demo/mask_rcnn_R18_FPN_demo.yaml \\
      --weights soco=demo_output/soco_d2.pkl --weights scratch= --seeds 3 [--frozen] \\
      --register-coco demo_train train.json train/ --register-coco demo_val val.json val/ \\
      bench_output/ SOLVER.MAX_ITER 300

Each run is a tools/train_net.py process in OUTPUT_DIR/<NAME>/seed<k>/ (SEED k); run the command again
after a stop: finished runs are skipped, a run with a last_checkpoint resumes. Writes OUTPUT_DIR/results.json,
results.md (mean ± std per init, per-seed values) and results.png. --frozen: the "detection probe", the
backbone (and the FPN / box head the weights hold) frozen; random init then trains on a frozen random
backbone (the baseline of the probe).
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
