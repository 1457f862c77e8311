r"""Draw an image's raw (left) and filtered (right) proposals into a PNG.

Raw boxes come from a generation output (``--raw``) or are computed now (``--backend``); filtered
boxes come from a SoCo JSON or store (``--proposals``) or from filtering the raw ones (``--strategy``)::

    python selective_search/visualize_proposals.py --image train/n01440764/n01440764_10026.JPEG \
        --raw proposals_raw --proposals train_ratio3size0308post.store --output vis.png
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from soco_proposals.backends import PROPOSAL_BACKENDS, get_backend
from soco_proposals.filters import filter_boxes, parse_strategy
from soco_proposals.generate import load_rgb_array
from soco_proposals.image_list import image_key
from soco_proposals.raw_shards import find_image_proposals, find_shards
from soco_proposals.store import open_proposals
from soco_proposals.visualize import render_proposals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", required=True, help="the image file")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument(
        "--raw", nargs="*", default=None, help="generation output folder(s) holding the image"
    )
    parser.add_argument(
        "--backend",
        default="reference",
        choices=sorted(PROPOSAL_BACKENDS),
        help="computes the raw boxes when --raw is not given",
    )
    parser.add_argument("--proposals", default=None, help="filtered proposals: SoCo JSON or store")
    parser.add_argument(
        "--strategy", default="ratio3size0308", help="filter used when --proposals is not given"
    )
    args = parser.parse_args()

    image, _ = load_rgb_array(args.image)
    key = image_key(args.image)
    if args.raw:
        raw_boxes = find_image_proposals(find_shards(args.raw, allow_incomplete=True), key).boxes
    else:
        raw_boxes = get_backend(args.backend)(image)
    if args.proposals:
        filtered = open_proposals(args.proposals)[key]
    else:
        filtered = filter_boxes(raw_boxes, image.shape[:2], parse_strategy(args.strategy))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_proposals(image, np.asarray(raw_boxes), filtered)).save(args.output)
    print(
        f"{key}: {len(raw_boxes)} raw boxes (left), {len(filtered)} filtered boxes (right) -> {args.output}"
    )


if __name__ == "__main__":
    main()
