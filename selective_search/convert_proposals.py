"""Convert proposals between the SoCo JSON and the compact store (the direction follows the input).

python selective_search/convert_proposals.py train_ratio3size0308post.json train_ratio3size0308post.store
python selective_search/convert_proposals.py train_ratio3size0308post.store back.json
"""

import argparse
from pathlib import Path

from soco_proposals.store import json_to_store, store_to_json


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a SoCo .json file or a store folder")
    parser.add_argument("destination", help="a store folder (from JSON) or a .json file (from a store)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination store")
    args = parser.parse_args()
    if Path(args.source).is_dir():
        store_to_json(args.source, args.destination)
    else:
        json_to_store(args.source, args.destination, overwrite=args.overwrite)
    print(f"wrote {args.destination}")


if __name__ == "__main__":
    main()
