r"""Step 2: filter the raw proposals into the SoCo JSON (and optionally the compact store).

Writes ``OUTPUT`` (``{key: [[x, y, w, h], ...]}``), ``<OUTPUT stem>no_props_images.txt`` and, when some
images could not be read during generation, ``<OUTPUT stem>failed_images.txt``. Example::

    python selective_search/filter_ss_proposals_json.py --input proposals_raw \
        --strategy ratio3size0308 --output train_ratio3size0308.json
"""

from soco_proposals.cli import filter_step_parser, setup_logging
from soco_proposals.filter_pipeline import filter_proposals


def main() -> None:
    parser = filter_step_parser(__doc__)
    parser.add_argument(
        "--strategy",
        default="ratio3size0308",
        help="none, ratio<R>, size<XX> or ratio<R>size<AA><BB> (default: ratio3size0308)",
    )
    parser.add_argument("--output", required=True, help="output JSON, e.g. train_ratio3size0308.json")
    args = parser.parse_args()
    setup_logging()
    filter_proposals(
        args.input, args.strategy, args.output, store=args.store, allow_incomplete=args.allow_incomplete
    )


if __name__ == "__main__":
    main()
