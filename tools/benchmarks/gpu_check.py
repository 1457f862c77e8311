#!/usr/bin/env python
"""The one-shot GPU check's measurements (``tools/benchmarks/gpu_check.sh`` runs this after its set-up).

Steps, each recorded in ``OUT/gpu_check.json`` as soon as it ends (a failing step is recorded and the
others still run; the exit status is 1 if any failed), then summarised in ``OUT/gpu_check.md``:

1. ``environment``: soco's environment table, GPU name and memory;
2. ``soco_fpn``: SoCo R50-FPN (``SoCo_FPN_100ep.yaml``) at per-GPU batch 64 and 128 in bf16 and fp16
   (and bf16 + channels_last at 128): images/s, peak GPU memory, data-time share
   (``tools/benchmarks/bench_pretrain.py``, one process per measurement, synthetic ImageNet-sized photos);
3. ``lars``: LARS step time, foreach vs one parameter at a time (``bench_lars.py``);
4. ``moco_vs_densecl``: MoCo v2 and DenseCL images/s at the same batch (the paper: < 1 % overhead);
5. ``transfer``: a short real pretraining run (``tools/pretrain_net.py``) to ``model_final.pth``, its
   conversion to Detectron2 (``converters/convert_to_detectron2.py``, verified against the Mask R-CNN
   config) and a Mask R-CNN forward pass on the device with the converted weights.

``--dry-run`` does all of it on CPU with tiny batches and 1-2 iterations (fp16 then falls back to fp32,
as ``SOLVER.AMP`` does on CPU): it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pretrain  # noqa: E402  (a sibling script)

from soco.collect_env import collect_env_info  # noqa: E402
from soco_proposals.fileio import atomic_write_text  # noqa: E402

SOCO_FPN = REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"
MOCO = REPO / "soco" / "configs" / "MoCoV2_200ep.yaml"
DENSECL = REPO / "soco" / "configs" / "DenseCL_200ep.yaml"
MASK_RCNN = REPO / "detectron2_configs" / "coco" / "mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml"
#: the goals of issue 13 for the SoCo FPN run at AMP
GOAL_IMAGES_PER_SEC, GOAL_DATA_SHARE = 250.0, 0.10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json / .md and logs")
    parser.add_argument("--dry-run", action="store_true", help="everything on CPU, tiny and short")
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per throughput measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--num-workers", type=int, default=12, help="data-loading processes")
    parser.add_argument("--images", type=int, default=1024, help="synthetic photos (the stream loops)")
    args = parser.parse_args()
    if args.dry_run:
        args.iters, args.warmup, args.num_workers, args.images = 1, 1, 2, 16
    args.device = "cpu" if args.dry_run else "cuda"
    return args


class Report:
    """The results, written to ``gpu_check.json`` after every step."""

    def __init__(self, out: Path):
        self.path = out / "gpu_check.json"
        self.data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}

    def run(self, name: str, step: Callable[[], dict]) -> None:
        print(f"[gpu_check] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = {"ok": True, **step()}
        except Exception:  # one failing step must not cost the others' results
            result = {"ok": False, "error": traceback.format_exc(limit=8)}
            print(result["error"], file=sys.stderr, flush=True)
        result["seconds"] = round(time.perf_counter() - start, 1)
        self.data["steps"][name] = result
        atomic_write_text(self.path, [json.dumps(self.data, indent=1), "\n"])
        print(
            f"[gpu_check] {name}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s", flush=True
        )

    @property
    def ok(self) -> bool:
        return all(step["ok"] for step in self.data["steps"].values())


def environment() -> dict:
    info = dict(collect_env_info())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["GPU memory GiB"] = f"{props.total_memory / 2**30:.1f}"
        info["GPU multiprocessors"] = str(props.multi_processor_count)
    return {"table": info}


def throughput(args: argparse.Namespace, corpus: tuple[str, str], config: Path, batch: int, opts: list[str]):
    """One ``bench_pretrain`` measurement in its own process (clean peak memory)."""
    bench_args = argparse.Namespace(
        image_root=corpus[0], proposals=corpus[1], device=args.device, iters=args.iters, warmup=args.warmup,
        threads=0, num_workers=args.num_workers, amp=True, opts=opts,
    )  # fmt: skip
    row = bench_pretrain.run_isolated(bench_args, "throughput", str(config), batch, [])
    if "error" in row:
        raise RuntimeError(f"{config.name} batch {batch} {' '.join(opts)}: {row['error']}")
    return row


def soco_fpn(args: argparse.Namespace, corpus: tuple[str, str]) -> dict:
    batches = [2] if args.dry_run else [64, 128]
    variants = [("bfloat16", False), ("float16", False)]
    rows = []
    for precision, channels_last in [*variants, ("bfloat16", True)]:
        for batch in batches if not channels_last else batches[-1:]:
            opts = ["SOLVER.AMP.PRECISION", precision, "MODEL.CHANNELS_LAST", str(channels_last)]
            row = throughput(args, corpus, SOCO_FPN, batch, opts)
            rows.append({**row, "precision": precision, "channels_last": channels_last})
    return {"rows": rows}


def lars(args: argparse.Namespace) -> dict:
    command = [sys.executable, str(REPO / "tools" / "benchmarks" / "bench_lars.py"), "--device", args.device]
    command += ["--steps", "3" if args.dry_run else "20"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return {"table": result.stdout.strip()}


def moco_vs_densecl(args: argparse.Namespace, corpus: tuple[str, str]) -> dict:
    batch = 4 if args.dry_run else 256
    rows = [
        {
            **throughput(args, corpus, config, batch, ["SOLVER.AMP.PRECISION", "bfloat16"]),
            "precision": "bfloat16",
        }
        for config in (MOCO, DENSECL)
    ]
    return {"rows": rows, "densecl_overhead": rows[0]["images_per_sec"] / rows[1]["images_per_sec"] - 1}


def transfer(args: argparse.Namespace, corpus: tuple[str, str]) -> dict:
    """Pretrain a few iterations, convert, verify and run Mask R-CNN inference with the weights."""
    run_dir = Path(corpus[0]).parent / "soco_fpn_run"  # beside the corpus: checkpoints stay out of OUT
    batch = "2" if args.dry_run else "64"
    pretrain = [
        sys.executable, str(REPO / "tools" / "pretrain_net.py"), "--config-file", str(SOCO_FPN),
        "PRETRAIN.DATA.IMAGE_ROOT", corpus[0], "PRETRAIN.DATA.PROPOSALS", corpus[1],
        "OUTPUT_DIR", str(run_dir), "MODEL.DEVICE", args.device, "SOLVER.IMS_PER_BATCH", batch,
        "SOLVER.EPOCHS", "0", "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.AMP.PRECISION", "bfloat16", "DATALOADER.NUM_WORKERS", str(args.num_workers),
        "SOLVER.LOG_PERIOD", "1",
    ]  # fmt: skip
    _run_logged(pretrain, args.out / "pretrain.log")
    pkl = run_dir / "model_final_d2.pkl"
    convert = [
        sys.executable,
        str(REPO / "converters" / "convert_to_detectron2.py"),
        str(run_dir / "model_final.pth"),
    ]
    convert += [str(pkl), "--verify-config", str(MASK_RCNN), "--verify-opts", "MODEL.DEVICE", "cpu"]
    _run_logged(convert, args.out / "convert.log")
    return {
        "checkpoint": str(run_dir / "model_final.pth"),
        "converted": str(pkl),
        **mask_rcnn_forward(args, pkl),
    }


def mask_rcnn_forward(args: argparse.Namespace, weights: Path) -> dict:
    from soco.checkpoint import SafeDetectionCheckpointer
    from soco.detection import TransferTrainer, load_transfer_config

    cfg = load_transfer_config(str(MASK_RCNN), ["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", args.device])
    model = TransferTrainer.build_model(cfg)
    SafeDetectionCheckpointer(model).load(str(weights))
    model.eval()
    generator = torch.Generator().manual_seed(0)
    pixels = [torch.randint(0, 256, (3, 800, 1067), generator=generator, dtype=torch.uint8) for _ in range(2)]
    images = [{"image": image, "height": 480, "width": 640} for image in pixels]
    with torch.no_grad():
        model(images)  # warm-up (cudnn autotuning)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = model(images)
        if args.device == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    instances = [len(output["instances"]) for output in outputs]
    return {"mask_rcnn_seconds_per_image": seconds / len(images), "instances": instances}


def _run_logged(command: list[str], log: Path) -> None:
    with open(log, "w") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode:
        tail = log.read_text().splitlines()[-30:]
        raise RuntimeError(
            f"{' '.join(command[:3])} ... failed ({result.returncode}), see {log}:\n" + "\n".join(tail)
        )


def markdown(data: dict, dry_run: bool) -> str:
    """The summary table of the measurements (and which steps failed)."""
    steps = data["steps"]
    lines = [f"# GPU check {'(CPU dry run: no speed meaning) ' if dry_run else ''}{data['started']}", ""]
    env = steps.get("environment", {}).get("table", {})
    if env:
        lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in env.items()), ""]
    rows = steps.get("soco_fpn", {}).get("rows", []) + steps.get("moco_vs_densecl", {}).get("rows", [])
    if rows:
        lines += [
            "| config | per-GPU batch | precision | channels_last | img/s | step s | data % | peak MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['config']} | {row['batch']} | {row['precision']} | "
                f"{row.get('channels_last', False)} | {row['images_per_sec']:.1f} | {row['step_s']:.3f} | "
                f"{row['data_share']:.1%} | {row['peak_mib']:.0f} |"
            )
        lines.append("")
        lines.append(
            f"Goals: SoCo FPN >= {GOAL_IMAGES_PER_SEC:.0f} img/s per GPU at AMP, "
            f"data time < {GOAL_DATA_SHARE:.0%}."
        )
    if "moco_vs_densecl" in steps and steps["moco_vs_densecl"]["ok"]:
        overhead = steps["moco_vs_densecl"]["densecl_overhead"]
        line = f"DenseCL's time per image over MoCo v2's: {overhead:+.1%}"
        if max(row["data_share"] for row in steps["moco_vs_densecl"]["rows"]) > GOAL_DATA_SHARE:
            line += " (data-bound: the loader, not the model, sets this pace)"
        lines.append(line + ".")
    if steps.get("lars", {}).get("ok"):
        lines += ["", steps["lars"]["table"]]
    if steps.get("transfer", {}).get("ok"):
        t = steps["transfer"]
        seconds = t["mask_rcnn_seconds_per_image"]
        lines += ["", f"Mask R-CNN forward with the converted weights: {seconds:.3f} s per image."]
    failed = [name for name, step in steps.items() if not step["ok"]]
    lines += ["", f"Steps failed: {', '.join(failed)} (see gpu_check.json)" if failed else "All steps ran."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    report.data["dry_run"] = args.dry_run
    report.run("environment", environment)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        corpus = bench_pretrain.write_corpus(Path(tmp), args.images)
        report.run("soco_fpn", lambda: soco_fpn(args, corpus))
        report.run("lars", lambda: lars(args))
        report.run("moco_vs_densecl", lambda: moco_vs_densecl(args, corpus))
        report.run("transfer", lambda: transfer(args, corpus))
    summary = markdown(report.data, args.dry_run)
    atomic_write_text(args.out / "gpu_check.md", [summary])
    print(summary)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
