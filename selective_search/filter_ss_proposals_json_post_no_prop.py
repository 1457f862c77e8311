"""Step 3: give images left without proposals the ratio-only boxes, else the w, h >= 32 boxes.

Reads ``<FILTERED stem>no_props_images.txt`` unless ``--no-props`` names the list. Example::

    python selective_search/filter_ss_proposals_json_post_no_prop.py --input proposals_raw \
        --filtered train_ratio3size0308.json --output train_ratio3size0308post.json \
        --store train_ratio3size0308post.store
"""

import argparse
import logging

from soco.proposals.filter_pipeline import post_fix_proposals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input", nargs="+", required=True, help="generation output folder(s) or shard folder(s)"
    )
    parser.add_argument("--filtered", required=True, help="the step-2 JSON (or store)")
    parser.add_argument("--output", required=True, help="output JSON, e.g. train_ratio3size0308post.json")
    parser.add_argument("--no-props", default=None, help="list of keys to fix (default: next to --filtered)")
    parser.add_argument("--store", default=None, help="also write the compact proposal store to this folder")
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="use unfinished or missing shards' finished chunks instead of failing",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    post_fix_proposals(
        args.input,
        args.filtered,
        args.output,
        no_props_list=args.no_props,
        store=args.store,
        allow_incomplete=args.allow_incomplete,
    )


if __name__ == "__main__":
    main()
