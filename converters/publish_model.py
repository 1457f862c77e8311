"""Publish a soco pretraining checkpoint: drop optimizer / scheduler state, the momentum target
network and the queues, and put the first 8 hex digits of the file's sha256 in its name.

The file is a ``.safetensors`` (tensors only: reading it cannot run code) unless OUTPUT ends with
``.pth`` / ``.pkl`` or ``--file-type`` asks for one of those.

  python converters/publish_model.py output/soco_fpn_100ep/model_final.pth release/soco_fpn_100ep
  # -> release/soco_fpn_100ep-1a2b3c4d.safetensors
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from soco.checkpoint import publish_checkpoint
from soco.checkpoint.publish import PUBLISHED_SUFFIXES
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="soco pretraining checkpoint (model_final.pth, model_XXXXXXX.pth)")
    parser.add_argument(
        "output", help="output path; '-<sha256 prefix>' is inserted before its suffix (added if missing)"
    )
    parser.add_argument(
        "--file-type",
        choices=[suffix[1:] for suffix in PUBLISHED_SUFFIXES],
        help="file to write when OUTPUT has no suffix (default: safetensors); must agree with its suffix",
    )
    parser.add_argument("--verbose", action="store_true", help="list every dropped entry")
    args = parser.parse_args(argv)
    output = args.output
    suffix = next((s for s in PUBLISHED_SUFFIXES if output.endswith(s)), None)
    if suffix is None:
        output += f".{args.file_type or 'safetensors'}"
    elif args.file_type and suffix != f".{args.file_type}":
        parser.error(f"OUTPUT {output!r} ends with {suffix} but --file-type is {args.file_type}")
    print(publish_checkpoint(args.input, output).summary(args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
