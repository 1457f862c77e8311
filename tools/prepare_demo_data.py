#!/usr/bin/env python
"""Write the demo's unlabeled corpus (real photos) and its copy-paste labeled set (COCO json).

python tools/prepare_demo_data.py --cache .data/photos --output demo_output/data
"""

import argparse

from soco.demo.prepare import prepare_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default=".data/photos", help="photo cache filled by tools/setup_env.sh")
    parser.add_argument("--output", default="demo_output/data", help="output folder")
    parser.add_argument("--max-side", type=int, default=512, help="downscale corpus photos to this long side")
    args = parser.parse_args()
    for name, path in prepare_demo_data(args.cache, args.output, args.max_side).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
