#!/usr/bin/env python
"""Plot the probe accuracies of a pretraining run against the iteration (0: the initialisation).

  python tools/plot_probes.py output/soco_fpn_tiny/metrics.json output/soco_fpn_tiny/probes.png

Reads the ``probe/*`` rows of Detectron2's metrics.json (written with PRETRAIN.EVAL_PERIOD > 0) and draws
object-level (kNN, linear probe) and image-level (kNN) accuracy, side by side; the PNG is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from soco.evaluation.plot import plot_probe_curves, read_probe_curves
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("metrics_json", help="metrics.json of a pretraining run with probes")
    parser.add_argument("output_png", help="PNG to write")
    args = parser.parse_args(argv)
    curves = read_probe_curves(args.metrics_json)
    plot_probe_curves(curves, args.output_png, title=args.metrics_json)
    print(f"wrote {args.output_png} ({', '.join(f'{k}: {len(v)} points' for k, v in curves.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
