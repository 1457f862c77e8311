#!/usr/bin/env python
"""Cost of one probe evaluation (PRETRAIN.EVAL_PERIOD) on a demo-sized probe set, on the CPU.

    python tools/benchmarks/bench_probes.py [--box-images 50 16] [--folder-images 60 30] [--rounds 3]

Probe sets written in a temporary folder: COCO-format boxes on 192 x 144 JPEGs (3 boxes each, 3 classes,
like the demo's copy-paste set) and a 3-class image folder of 192 x 144 JPEGs. The encoder is the freshly
built model of each tiny config (weights converted in memory as the hook does). The first evaluation
decodes and caches the images; the later ones (the periodic cost during training) read the cache. Wall
and CPU seconds (all threads), median over ``--rounds``; the machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.modeling import build_model
from PIL import Image

from soco.data import register_coco_format_dataset
from soco.engine.pretrain import load_pretrain_cfg
from soco.evaluation import ProbeData, ProbeEvaluator, ProbeSettings, format_results, model_weights

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("coin", "fish", "quokka")
SIZE = (192, 144)


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)


def write_box_set(folder: Path, count: int, seed: int) -> Path:
    """``count`` 192 x 144 JPEGs with 3 filled boxes each and their COCO json; returns the json."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        pixels = _image(rng)
        for _ in range(3):
            w, h = (int(v) for v in rng.integers(16, 72, 2))
            x, y = int(rng.integers(0, SIZE[0] - w)), int(rng.integers(0, SIZE[1] - h))
            pixels[y : y + h, x : x + w] = rng.integers(0, 256, 3)
            category = int(rng.integers(1, 4))
            box = {"bbox": [x, y, w, h], "category_id": category, "area": w * h, "iscrowd": 0}
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **box})
        Image.fromarray(pixels).save(folder / "images" / f"{image_id:03d}.jpg", quality=90)
        images.append(
            {"id": image_id, "file_name": f"{image_id:03d}.jpg", "width": SIZE[0], "height": SIZE[1]}
        )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    (folder / "boxes.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return folder / "boxes.json"


def write_image_folder(root: Path, counts: tuple[int, int]) -> Path:
    rng = np.random.default_rng(7)
    for split, count in zip(("train", "val"), counts, strict=True):
        for i in range(count):
            folder = root / split / CLASSES[i % 3]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_image(rng)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--box-images", type=int, nargs=2, default=(50, 16), metavar=("TRAIN", "TEST"))
    parser.add_argument("--folder-images", type=int, nargs=2, default=(60, 30), metavar=("TRAIN", "VAL"))
    parser.add_argument("--rounds", type=int, default=3, help="cached evaluations timed after the first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--configs", nargs="+", default=["SoCo_FPN.yaml", "MoCoV2.yaml"])
    parser.add_argument(
        "opts", nargs="*", help="PRETRAIN.PROBES.* overrides, e.g. PRETRAIN.PROBES.IMAGE_SIZE 96"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, count, seed in (
            ("bench_train", args.box_images[0], 0),
            ("bench_test", args.box_images[1], 1),
        ):
            json_file = write_box_set(root / name, count, seed)
            register_coco_format_dataset(name, str(json_file), str(root / name / "images"))
        folder = write_image_folder(root / "folder", tuple(args.folder_images))
        probes = ["PRETRAIN.PROBES.IMAGE_ROOT", str(folder), "PRETRAIN.PROBES.BOX_TRAIN", "bench_train",
                  "PRETRAIN.PROBES.BOX_TEST", "bench_test", "PRETRAIN.PROBES.MIN_SIZE_TEST", "144",
                  "PRETRAIN.PROBES.MAX_SIZE_TEST", "256", "PRETRAIN.PROBES.IMAGE_SIZE", "96"]  # fmt: skip
        print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")
        for config in args.configs:
            cfg = load_pretrain_cfg(
                str(REPO / "soco" / "configs" / "tiny" / config), probes + list(args.opts)
            )
            settings = ProbeSettings.from_config(cfg)
            data = ProbeData.from_config(cfg, settings)
            weights = model_weights(build_model(cfg))
            evaluator = ProbeEvaluator(data, settings)
            first = evaluator(weights)
            cached, cpu = [], []
            for _ in range(args.rounds):
                start = time.process_time()
                cached.append(evaluator(weights)["probe/seconds"])
                cpu.append(time.process_time() - start)
            kind = type(evaluator.encoder).__name__
            print(f"{config} ({kind}; {data.describe()}):")
            print(f"  first evaluation (decode + cache): {format_results(first)}")
            print(
                f"  cached, median of {args.rounds}: {statistics.median(cached):.2f} s wall, "
                f"{statistics.median(cpu):.2f} s CPU (all threads)"
            )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
