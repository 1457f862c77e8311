"""Publish a soco pretraining checkpoint: drop optimizer / scheduler state, the momentum target
network and the queues, and put the first 8 hex digits of the file's sha256 in its name.

  python converters/publish_model.py output/soco_fpn_100ep/model_final.pth release/soco_fpn_100ep.pth
  # -> release/soco_fpn_100ep-1a2b3c4d.pth
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from soco.checkpoint import publish_checkpoint
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="soco pretraining checkpoint (model_final.pth, model_XXXXXXX.pth)")
    parser.add_argument("output", help="output path; '-<sha256 prefix>' is inserted before .pth")
    parser.add_argument("--verbose", action="store_true", help="list every dropped entry")
    args = parser.parse_args(argv)
    print(publish_checkpoint(args.input, args.output).summary(args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
