#!/usr/bin/env python
"""Data cost per sample: CPU milliseconds per sample on one core for every view generator, with the share of
JPEG decoding, on ImageNet-sized JPEGs (500 x 375 crops of real photos, 30 proposals each).

    python tools/benchmarks/bench_views.py [--images 32] [--rounds 5] [--samples 40]

A sample is what a DataLoader worker does per item: decode the file, seed the sample's RNGs, run the config's
view generator. The pipelines are timed in interleaved rounds in one process with one torch thread, and each
reports its median over the rounds of CPU time (``time.process_time``), so load from other processes on a
shared machine affects them alike. The ``FAST_PHOTOMETRIC`` rows use the approximate OpenCV hue shift and
blur (off by default, see soco/data/photometric.py). The row ``original SoCo FPN (re-creation)`` is
``tools/benchmarks/original_soco_views.py``: a re-creation of the original pipeline written from its
description (not the original code), run on the same images in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_like import imagenet_sized_jpegs, random_proposals  # noqa: E402
from original_soco_views import OriginalSoCoFPNViews  # noqa: E402

from soco.data import VIEW_GENERATOR_REGISTRY  # noqa: E402
from soco.data.build import seed_sample_rngs  # noqa: E402
from soco.engine.pretrain import load_pretrain_cfg  # noqa: E402
from soco_proposals.image_io import decode_rgb  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ["PRETRAIN.DATA.FAST_PHOTOMETRIC", "True"]
#: row name -> (config, its overrides)
CONFIGS = {
    "SoCo FPN": ("SoCo_FPN_100ep.yaml", []),
    "SoCo FPN, no cutout": ("SoCo_FPN_400ep.yaml", []),
    "SoCo FPN*": ("SoCo_FPN_Star_400ep.yaml", []),
    "SoCo C4": ("SoCo_C4_100ep.yaml", []),
    "MoCo v2 / DenseCL": ("MoCoV2_200ep.yaml", []),
    "SwAV multi-crop": ("SwAV_200ep.yaml", []),
    "SoCo FPN, FAST_PHOTOMETRIC (approximation)": ("SoCo_FPN_100ep.yaml", FAST),
    "SoCo FPN*, FAST_PHOTOMETRIC (approximation)": ("SoCo_FPN_Star_400ep.yaml", FAST),
    "SoCo C4, FAST_PHOTOMETRIC (approximation)": ("SoCo_C4_100ep.yaml", FAST),
}
ORIGINAL = "original SoCo FPN (re-creation)"


def make_corpus(folder: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` JPEG files in ``folder`` and their proposals (30 xywh boxes each)."""
    rng = np.random.default_rng(0)
    corpus = []
    for index, jpeg in enumerate(imagenet_sized_jpegs(count)):
        path = folder / f"image_{index:03d}.JPEG"
        path.write_bytes(jpeg)
        with Image.open(path) as image:
            corpus.append((str(path), random_proposals(*image.size, 30, rng)))
    return corpus


def sample_functions(
    corpus: list[tuple[str, np.ndarray]], opts: list[str]
) -> dict[str, Callable[[int], object]]:
    """One function per pipeline: ``f(i)`` makes the i-th sample (decode + seeding + views)."""

    def decode(i: int):
        return decode_rgb(corpus[i % len(corpus)][0])

    functions: dict[str, Callable[[int], object]] = {"JPEG decode": decode}
    for name, (config, overrides) in CONFIGS.items():
        cfg = load_pretrain_cfg(str(REPO / "soco" / "configs" / config), overrides + opts)
        generator = VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)(cfg)

        def sample(i: int, generator=generator):
            image = decode(i)
            seed_sample_rngs(0, i)
            return generator(image, corpus[i % len(corpus)][1])

        functions[name] = sample
    original = OriginalSoCoFPNViews()

    def original_sample(i: int):
        image = decode(i)
        seed_sample_rngs(0, i)
        return original(image, corpus[i % len(corpus)][1])

    functions[ORIGINAL] = original_sample
    return functions


def measure(functions: dict[str, Callable[[int], object]], rounds: int, samples: int) -> dict[str, float]:
    """Median over ``rounds`` of the CPU ms per sample of each function, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():  # warm-up
        for i in range(3):
            function(i)
    for round_index in range(rounds):
        for name, function in functions.items():
            start = time.process_time()
            for i in range(samples):
                function(round_index * samples + i)
            times[name].append((time.process_time() - start) / samples * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=32, help="distinct JPEGs")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--samples", type=int, default=40, help="samples per pipeline and round")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_views_") as tmp:
        corpus = make_corpus(Path(tmp), args.images)
        ms = measure(sample_functions(corpus, args.opts), args.rounds, args.samples)
    decode_ms = ms.pop("JPEG decode")
    print(
        f"{args.images} JPEGs of 500 x 375 / 375 x 500 from real photos, CPU ms per sample on one core "
        f"(median of {args.rounds} interleaved rounds of {args.samples} samples); "
        f"JPEG decode {decode_ms:.2f} ms"
    )
    print("| views | config | ms / sample | decode share | vs original FPN |")
    print("|---|---|---|---|---|")
    for name, value in ms.items():
        config = CONFIGS[name][0] if name in CONFIGS else "tools/benchmarks/original_soco_views.py"
        print(f"| {name} | {config} | {value:.2f} | {decode_ms / value:.0%} | {value / ms[ORIGINAL]:.2f} |")


if __name__ == "__main__":
    main()
