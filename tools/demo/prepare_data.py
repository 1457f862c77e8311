#!/usr/bin/env python
"""Write the demo's unlabeled corpus (real photos), its copy-paste labeled set (COCO json) and the
image-classification folder of the image-level probe.

python tools/demo/prepare_data.py --cache .data/photos --output demo_output/data
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from copy_paste import build_copy_paste_dataset, build_image_folder
from photos import write_photo_corpus


def prepare_demo_data(
    cache_dir: str | os.PathLike, out_dir: str | os.PathLike, max_side: int = 512
) -> dict[str, Path]:
    """Write ``out_dir/corpus`` (unlabeled photos), ``out_dir/labeled/{train,val}.json`` (+ images) and
    ``out_dir/probe_images/{train,val}/<category>/`` (one object per image)."""
    out_dir = Path(out_dir)
    corpus = out_dir / "corpus"
    write_photo_corpus(cache_dir, corpus, max_side=max_side)
    splits = build_copy_paste_dataset(cache_dir, out_dir / "labeled")
    probe_images = out_dir / "probe_images"
    build_image_folder(cache_dir, probe_images)
    return {
        "corpus": corpus,
        "train_json": splits["train"],
        "val_json": splits["val"],
        "probe_images": probe_images,
    }


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
