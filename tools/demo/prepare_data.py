#!/usr/bin/env python
"""Write the demo's unlabeled corpus (real photos), its copy-paste labeled set (COCO json) and the
image-classification folder of the image-level probe. Val objects are never train objects (split by source).

python tools/demo/prepare_data.py --cache .data/photos --stamps .data/stamps --output demo_output/data
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from copy_paste import (
    CATEGORIES,
    background_photos,
    build_copy_paste_dataset,
    build_image_folder,
    load_cutouts,
    split_by_source,
)
from photos import write_photo_corpus
from stamps import StampsUnavailable, fetch_stamps


def prepare_demo_data(
    cache_dir: str | os.PathLike,
    stamps_cache: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_side: int = 512,
) -> dict[str, Path]:
    """Write ``out_dir/corpus`` (unlabeled photos), ``out_dir/labeled/{train,val}.json`` (+ images) and
    ``out_dir/probe_images/{train,val}/<category>/`` (one object per image); print what went where."""
    out_dir = Path(out_dir)
    corpus = out_dir / "corpus"
    write_photo_corpus(cache_dir, corpus, max_side=max_side)
    cutouts, skipped = load_cutouts(cache_dir, fetch_stamps(stamps_cache))
    print(
        f"{len(cutouts)} object cut-outs in {len(CATEGORIES)} classes; stamps left out: "
        + ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    )
    pools = split_by_source(cutouts)
    for split, pool in pools.items():
        per_class = Counter(c.category for c in pool)
        groups = Counter(c.category for c in {c.group: c for c in pool}.values())
        print(
            f"{split} objects (cut-outs / distinct sources): "
            + ", ".join(f"{name} {per_class[name]}/{groups[name]}" for name in CATEGORIES)
        )
    backgrounds = background_photos(cache_dir)
    splits = build_copy_paste_dataset(out_dir / "labeled", backgrounds, pools)
    for split, (_, dropped) in splits.items():
        print(f"labeled {split}: {dropped} pasted objects left unannotated (visible area under 48 px)")
    probe_images = out_dir / "probe_images"
    counts = build_image_folder(probe_images, backgrounds, pools)
    print(f"probe images: {counts['train']} train, {counts['val']} val")
    return {
        "corpus": corpus,
        "train_json": splits["train"][0],
        "val_json": splits["val"][0],
        "probe_images": probe_images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default=".data/photos", help="photo cache filled by tools/setup_env.sh")
    parser.add_argument("--stamps", default=".data/stamps", help="stamp cache filled by tools/setup_env.sh")
    parser.add_argument("--output", default="demo_output/data", help="output folder")
    parser.add_argument("--max-side", type=int, default=512, help="downscale corpus photos to this long side")
    args = parser.parse_args()
    try:
        paths = prepare_demo_data(args.cache, args.stamps, args.output, args.max_side)
    except StampsUnavailable as error:
        raise SystemExit(f"error: {error}") from None
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
