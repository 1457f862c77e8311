#!/usr/bin/env python
"""Pretraining throughput: images/s, data-loading share and peak memory per config and batch size.

Each (config, batch size) runs in its own process (clean peak memory) through the real engine pieces:
the config's data loader (views from a synthetic or given corpus), the model options of
``soco.engine.fast_path``, ``build_step_runner`` (fp32, bf16 or fp16 with LARS) and the momentum update.
After warm-up steps, it reports

* ``img/s``: batch / mean step time (data wait + forward + backward + optimizer);
* ``data %``: mean time waiting for the loader / mean step time (target: < 10 % with the configured workers);
* ``peak MiB``: CUDA ``max_memory_allocated``, or on CPU the main process's peak RSS (workers excluded).

For SoCo FPN configs, ``--head-cost`` also times a step's forward+backward, its backbone (+FPN, both
branches) alone and the rest alone (RoIAlign, box head, MLPs, loss: the model's forward with the backbones'
outputs precomputed), for ``SOCO.POOL_ALL_LEVELS`` True and False, each with both ``SOCO.HEAD_BATCHING``
values (``per_level``: one head/MLP call per box set and level, as the original; ``per_box_set``: one call
per box set). ``--no-throughput`` measures only that; ``--cpu-time`` times it in process CPU seconds, which a
shared CPU machine's load barely changes (use it with ``--threads 1``).

    python tools/benchmarks/bench_pretrain.py                      # tiny SoCo + baseline configs, CPU
    python tools/benchmarks/bench_pretrain.py --configs soco/configs/SoCo_FPN_100ep.yaml --batch-sizes 128 \
        --device cuda --amp --iters 20 --head-cost
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from PIL import Image

from soco.config import add_soco_config
from soco.data import batch_keys
from soco.data.build import build_pretrain_train_loader
from soco.engine.fast_path import apply_fast_path
from soco.engine.pretrain import setup_pretrain_cfg
from soco.engine.step import build_step_runner
from soco.modeling.soco_branch import pad_to_divisibility
from soco.modeling.soco_rois import HEAD_BATCHINGS
from soco.solver import build_optimizer

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIGS = ["SoCo_FPN", "SoCo_FPN_Star", "SoCo_C4", "MoCoV2", "SwAV", "DenseCL"]


def default_configs() -> list[str]:
    """The tiny SoCo configs and, when they exist, the tiny baseline configs."""
    paths = [REPO / "soco" / "configs" / "tiny" / f"{name}.yaml" for name in TINY_CONFIGS]
    return [str(p) for p in paths if p.is_file()]


def write_corpus(folder: Path, count: int, seed: int = 0) -> tuple[str, str]:
    """``count`` ImageNet-sized JPEGs (smooth noise + rectangles) and a SoCo JSON with 30 boxes per image."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    proposals = {}
    for i in range(count):
        width, height = int(rng.integers(400, 501)), int(rng.integers(300, 376))
        coarse = rng.integers(0, 255, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(folder / "images" / f"bench_{i:05d}.jpg", quality=90)
        sizes = rng.uniform(0.3, 0.8, size=(30, 1)) * np.sqrt(width * height)
        ratios = rng.uniform(1 / 2, 2, size=(30, 1))
        wh = np.concatenate([sizes * np.sqrt(ratios), sizes / np.sqrt(ratios)], axis=1)
        wh = np.minimum(wh, [width - 1, height - 1]).astype(int)
        xy = (rng.uniform(0, 1, size=(30, 2)) * ([width, height] - wh)).astype(int)
        proposals[f"bench_{i:05d}"] = np.concatenate([xy, wh], axis=1).tolist()
    proposals_file = folder / "proposals.json"
    proposals_file.write_text(json.dumps(proposals))
    return str(folder / "images"), str(proposals_file)


def meta_architecture(config: str) -> str:
    """The META_ARCHITECTURE a config file selects (without building anything)."""
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(config)
    return cfg.MODEL.META_ARCHITECTURE


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_config(args: argparse.Namespace, config: str, batch: int) -> dict:
    """Throughput of ``config`` at global batch ``batch`` in this (single) process."""
    cfg = setup_pretrain_cfg(config, _overrides(args, batch))
    model = apply_fast_path(cfg, build_model(cfg))  # MODEL.CHANNELS_LAST, MODEL.BACKBONE.COMPILE
    optimizer = build_optimizer(cfg, model)
    runner = build_step_runner(cfg, model, optimizer)
    runner.data_loader = build_pretrain_train_loader(cfg)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    step_times = []
    with EventStorage(0) as storage:
        for iteration in range(args.warmup + args.iters):
            storage.iter = runner.iter = iteration
            if hasattr(model, "momentum_update"):
                model.momentum_update(0.99)
            synchronize(args.device)
            start = time.perf_counter()
            runner.run_step()
            synchronize(args.device)
            step_times.append(time.perf_counter() - start)
        data_times = storage.history("data_time").values()
    step_time = float(np.mean(step_times[args.warmup :]))
    data_time = float(np.mean([value for value, it in data_times if it >= args.warmup]))
    if args.device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": Path(config).stem if "tiny" not in config else f"tiny/{Path(config).stem}",
        "batch": batch,
        "workers": cfg.DATALOADER.NUM_WORKERS,
        "images_per_sec": batch / step_time,
        "step_s": step_time,
        "data_share": data_time / step_time,
        "peak_mib": peak_mib,
    }


class _PrecomputedBackbone(torch.nn.Module):
    """Stands in for a backbone: returns the outputs it computed once for each view as fresh leaves that
    require grad, so that a forward+backward of the model times RoIAlign (and its backward), the heads, the
    MLPs and the loss, but not the backbone.
    """

    def __init__(self, backbone: torch.nn.Module, views: list[torch.Tensor]):
        super().__init__()
        self.size_divisibility = backbone.size_divisibility
        with torch.no_grad():
            padded = [pad_to_divisibility(view, backbone.size_divisibility) for view in views]
            self.outputs = [(image, backbone(image)) for image in padded]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        for image, outputs in self.outputs:
            if image.shape == images.shape and torch.equal(image, images):
                return {name: f.detach().requires_grad_() for name, f in outputs.items()}
        raise KeyError(f"no precomputed backbone outputs for a view of shape {tuple(images.shape)}")


@contextlib.contextmanager
def _backbones_replaced(model: torch.nn.Module, online: torch.nn.Module, target: torch.nn.Module):
    saved = model.backbone, model.target.backbone
    model.backbone, model.target.backbone = online, target
    try:
        yield
    finally:
        model.backbone, model.target.backbone = saved


def bench_head_cost(
    args: argparse.Namespace, config: str, batch: int, pool_all_levels: bool, head_batching: str
) -> dict:
    """Forward+backward time of a SoCo FPN step, of its backbone (+FPN, online and target) alone and of the
    rest alone.
    """
    soco_opts = ["SOCO.POOL_ALL_LEVELS", str(pool_all_levels), "SOCO.HEAD_BATCHING", head_batching]
    cfg = setup_pretrain_cfg(config, _overrides(args, batch) + soco_opts)
    model = build_model(cfg)
    data = next(iter(build_pretrain_train_loader(cfg)))
    data = {key: value.to(model.device) for key, value in data.items()}
    views = [data[batch_keys.view_key(v)] for v in batch_keys.views(data)]
    use_amp = args.amp and args.device.startswith("cuda")
    autocast = torch.autocast(device_type=model.device.type, enabled=use_amp)

    def full_step() -> None:
        with autocast:
            loss = sum(model(data).values())
        loss.backward()

    def backbone_step() -> None:
        with autocast:
            online = [model.online_branch().features(view) for view in views]
            with torch.no_grad():
                for view in views:
                    model.target.features(view)
            loss = sum(f.float().mean() for features in online for f in features)
        loss.backward()

    with autocast:
        precomputed = [_PrecomputedBackbone(b, views) for b in (model.backbone, model.target.backbone)]

    def head_step() -> None:
        with _backbones_replaced(model, *precomputed):
            full_step()

    # alternate the measurements so that load changes on a shared machine hit them alike; take medians
    clock = time.process_time if args.cpu_time else time.perf_counter
    steps = {"total_s": full_step, "backbone_s": backbone_step, "head_s": head_step}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for iteration in range(args.warmup + args.iters):
        for name, step in steps.items():
            model.zero_grad(set_to_none=True)
            synchronize(args.device)
            start = clock()
            step()
            synchronize(args.device)
            if iteration >= args.warmup:
                times[name].append(clock() - start)
    timings = {name: float(np.median(values)) for name, values in times.items()}
    return {
        "config": Path(config).stem,
        "batch": batch,
        "pool_all_levels": pool_all_levels,
        "head_batching": head_batching,
        **timings,
        "head_over_backbone": timings["head_s"] / timings["backbone_s"],
    }


def _overrides(args: argparse.Namespace, batch: int) -> list[str]:
    schedule = ["SOLVER.EPOCHS", "0", "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.WARMUP_ITERS", "0"]
    opts = [
        "PRETRAIN.DATA.IMAGE_ROOT", args.image_root, "PRETRAIN.DATA.PROPOSALS", args.proposals,
        "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.MAX_ITER", str(args.warmup + args.iters + 1),
        "MODEL.DEVICE", args.device, "SOLVER.AMP.ENABLED", str(args.amp),
        *schedule,
    ]  # fmt: skip
    if args.num_workers is not None:
        opts += ["DATALOADER.NUM_WORKERS", str(args.num_workers)]
    return opts + args.opts


def run_isolated(args: argparse.Namespace, mode: str, config: str, batch: int, extra: list[str]) -> dict:
    """Run one measurement in a child process; returns its JSON result or the error."""
    command = [sys.executable, __file__, "--child", mode, "--configs", config, "--batch-sizes", str(batch)]
    command += ["--image-root", args.image_root, "--proposals", args.proposals, "--device", args.device]
    command += ["--iters", str(args.iters), "--warmup", str(args.warmup)] + extra
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.num_workers is not None:
        command += ["--num-workers", str(args.num_workers)]
    if args.amp:
        command.append("--amp")
    if args.cpu_time:
        command.append("--cpu-time")
    command += ["--", *args.opts]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"config": Path(config).stem, "batch": batch, "error": error}
    return json.loads(lines[-1])


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as a markdown table; ``columns`` are (row key, title, format spec)."""
    print("| " + " | ".join(title for _, title, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        if "error" in row:
            print(f"| {row['config']} | {row['batch']} | FAILED: {row['error']} |")
            continue
        cells = [
            str(row[key]) if isinstance(row[key], bool) else f"{row[key]:{fmt}}" for key, _, fmt in columns
        ]
        print("| " + " | ".join(cells) + " |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--configs", nargs="+", default=None, help="config files (default: every tiny config)")
    add("--batch-sizes", nargs="+", type=int, default=[8], help="global batch sizes to measure")
    add("--iters", type=int, default=5, help="timed iterations per measurement")
    add("--warmup", type=int, default=2, help="untimed iterations first")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--amp", action="store_true", help="mixed precision (SOLVER.AMP.PRECISION; fp16 needs CUDA)")
    add("--num-workers", type=int, default=None, help="DATALOADER.NUM_WORKERS (default: the config's)")
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add("--head-cost", action="store_true", help="also split SoCo FPN steps into backbone and head")
    add("--no-throughput", action="store_true", help="skip the throughput table (e.g. with --head-cost)")
    add("--cpu-time", action="store_true", help="--head-cost in process CPU seconds (CPU only)")
    add("--image-root", default="", help="image corpus (default: synthetic, written to a temp dir)")
    add("--proposals", default="", help="proposals for --image-root (SoCo JSON or store)")
    add("--child", choices=["throughput", "head"], help=argparse.SUPPRESS)
    add("--pool-all-levels", default="True", help=argparse.SUPPRESS)
    add("--head-batching", default=HEAD_BATCHINGS[0], choices=HEAD_BATCHINGS, help=argparse.SUPPRESS)
    add("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every config")
    args = parser.parse_args()
    args.opts = [o for o in args.opts if o != "--"]
    if len(args.opts) % 2:
        parser.error(f"config overrides must be KEY VALUE pairs, got {args.opts}")
    if bool(args.image_root) != bool(args.proposals):
        parser.error("--image-root and --proposals go together")
    if args.cpu_time and args.device != "cpu":
        parser.error("--cpu-time measures CPU runs only (CUDA kernels run asynchronously)")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        config, batch = args.configs[0], args.batch_sizes[0]
        if args.child == "throughput":
            result = bench_config(args, config, batch)
        else:
            result = bench_head_cost(args, config, batch, args.pool_all_levels == "True", args.head_batching)
        print(json.dumps(result))
        return
    configs = args.configs or default_configs()
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        if not args.image_root:
            count = max(args.batch_sizes) * (args.warmup + args.iters + 2)
            args.image_root, args.proposals = write_corpus(Path(tmp), count)
        threads = args.threads or torch.get_num_threads()
        clock = "process CPU time" if args.cpu_time else "wall time"
        print(
            f"device {args.device}, AMP {args.amp}, torch threads {threads}, {args.iters} timed iterations, "
            f"{clock}"
        )
        if not args.no_throughput:
            rows = [run_isolated(args, "throughput", c, b, []) for c in configs for b in args.batch_sizes]
            print_table(
                rows,
                [
                    ("config", "config", ""),
                    ("batch", "batch", "d"),
                    ("workers", "workers", "d"),
                    ("images_per_sec", "img/s", ".2f"),
                    ("step_s", "step s", ".3f"),
                    ("data_share", "data %", ".1%"),
                    ("peak_mib", "peak MiB", ".0f"),
                ],
            )
        if args.head_cost:
            fpn_configs = [c for c in configs if meta_architecture(c) == "SoCoFPN"]
            variants = [
                ["--pool-all-levels", str(pool), "--head-batching", batching]
                for pool in (True, False)
                for batching in HEAD_BATCHINGS
            ]
            head_rows = [
                run_isolated(args, "head", c, b, flags)
                for c in fpn_configs
                for b in args.batch_sizes
                for flags in variants
            ]
            print(
                "\nSoCo FPN forward + backward: total, backbone+FPN alone (both branches), "
                "RoIAlign + RoI head + MLPs + loss alone"
            )
            print_table(
                head_rows,
                [
                    ("config", "config", ""),
                    ("batch", "batch", "d"),
                    ("pool_all_levels", "all levels", ""),
                    ("head_batching", "head BN batches", ""),
                    ("total_s", "total s", ".3f"),
                    ("backbone_s", "backbone s", ".3f"),
                    ("head_s", "head s", ".3f"),
                    ("head_over_backbone", "head/backbone", ".2f"),
                ],
            )


if __name__ == "__main__":
    main()
