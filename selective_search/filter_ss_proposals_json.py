"""Step 2: filter the raw proposals into the SoCo JSON (and optionally the compact store).

Writes ``OUTPUT`` (``{key: [[x, y, w, h], ...]}``), ``<OUTPUT stem>no_props_images.txt`` and, when some
images could not be read during generation, ``<OUTPUT stem>failed_images.txt``. Example::

    python selective_search/filter_ss_proposals_json.py --input proposals_raw \
        --strategy ratio3size0308 --output train_ratio3size0308.json
"""

import argparse
import logging

from soco.proposals.filter_pipeline import filter_proposals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input", nargs="+", required=True, help="generation output folder(s) or shard folder(s)"
    )
    parser.add_argument(
        "--strategy",
        default="ratio3size0308",
        help="none, ratio<R>, size<XX> or ratio<R>size<AA><BB> (default: ratio3size0308)",
    )
    parser.add_argument("--output", required=True, help="output JSON, e.g. train_ratio3size0308.json")
    parser.add_argument("--store", default=None, help="also write the compact proposal store to this folder")
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="use unfinished or missing shards' finished chunks instead of failing",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    filter_proposals(
        args.input, args.strategy, args.output, store=args.store, allow_incomplete=args.allow_incomplete
    )


if __name__ == "__main__":
    main()
