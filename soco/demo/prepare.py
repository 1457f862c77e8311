"""Prepare the demo's data: the unlabeled real-photo corpus and the copy-paste labeled set."""

from __future__ import annotations

import os
from pathlib import Path

from .copy_paste import build_copy_paste_dataset
from .photos import write_photo_corpus


def prepare_demo_data(
    cache_dir: str | os.PathLike, out_dir: str | os.PathLike, max_side: int = 512
) -> dict[str, Path]:
    """Write ``out_dir/corpus`` (unlabeled photos) and ``out_dir/labeled/{train,val}.json`` (+ images)."""
    out_dir = Path(out_dir)
    corpus = out_dir / "corpus"
    write_photo_corpus(cache_dir, corpus, max_side=max_side)
    splits = build_copy_paste_dataset(cache_dir, out_dir / "labeled")
    return {"corpus": corpus, "train_json": splits["train"], "val_json": splits["val"]}
