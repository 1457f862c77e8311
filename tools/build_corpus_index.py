#!/usr/bin/env python
r"""List a corpus once and write its index, which every rank of every run then reads (CORPUS_INDEX).

    python tools/build_corpus_index.py --image-root datasets/imagenet/train --output imagenet_index.txt
    python tools/build_corpus_index.py --image-root data/ImageNet-Zip/train.zip --output zip_index.txt

``--image-root`` is what PRETRAIN.DATA.IMAGE_ROOT names: a folder, an ImageNet tree, a train_map.txt or a
train.zip (with train_map.txt beside it). A training run writes the index itself when it is missing; this
command builds it ahead of time (e.g. once, before submitting many jobs) or rebuilds a stale one.
"""

import argparse
import logging
import time

from soco_proposals.cli import setup_logging
from soco_proposals.corpus_index import write_corpus_index


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image-root", required=True, help="folder, ImageNet tree, train_map.txt or train.zip"
    )
    parser.add_argument("--output", required=True, help="the index file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing (stale) index")
    args = parser.parse_args()
    setup_logging()
    start = time.perf_counter()
    images = write_corpus_index(args.image_root, args.output, overwrite=args.overwrite)
    logging.info(
        "%d images of %s indexed in %s (%.1f s)",
        len(images),
        args.image_root,
        args.output,
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
