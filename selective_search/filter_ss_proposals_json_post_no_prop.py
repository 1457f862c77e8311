r"""Step 3: give images left without proposals the ratio-only boxes, else the w, h >= 32 boxes.

Reads ``<FILTERED stem>no_props_images.txt`` unless ``--no-props`` names the list. Example::

    python selective_search/filter_ss_proposals_json_post_no_prop.py --input proposals_raw \
        --filtered train_ratio3size0308.json --output train_ratio3size0308post.json \
        --store train_ratio3size0308post.store
"""

from soco_proposals.cli import filter_step_parser, setup_logging
from soco_proposals.filter_pipeline import post_fix_proposals


def main() -> None:
    parser = filter_step_parser(__doc__)
    parser.add_argument("--filtered", required=True, help="the step-2 JSON (or store)")
    parser.add_argument("--output", required=True, help="output JSON, e.g. train_ratio3size0308post.json")
    parser.add_argument("--no-props", default=None, help="list of keys to fix (default: next to --filtered)")
    args = parser.parse_args()
    setup_logging()
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
