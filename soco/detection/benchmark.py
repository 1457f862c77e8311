"""Multi-seed transfer benchmark: every (weights, seed) fine-tuned by ``tools/train_net.py``, then tabulated.

Each run is a normal ``tools/train_net.py`` process (its command line is logged) in
``OUTPUT_DIR/<NAME>/seed<k>/`` with ``SEED k``. One protocol for every row: ``--freeze PARTS`` sets the same
``MODEL.FREEZE_PARTS`` for every weights file; a frozen part a file does not hold stays at the random
initialisation of the run's seed (the same tensors for every file) with its BN statistics calibrated on
training batches (``soco.detection.freeze``). ``--backbone-only`` loads only the backbone of every file.

A run is finished when its ``result.json`` (the final evaluation, written atomically once the process has
succeeded) exists and its folder was started with the same settings, the weights file's sha256 among
them: a re-run skips it, discards a run whose weights file has changed since (logged), resumes a run that
has a ``last_checkpoint`` (``--resume``, flagged in its result) and starts the others. Every input is
checked before the first run starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soco.checkpoint import (
    PART_MODEL_KEYS,
    check_transfer,
    detectron2_payload,
    load_checkpoint,
    save_pickle,
    transferred_parts,
)
from soco.data.datasets import (
    add_register_coco_argument,
    check_num_classes,
    register_coco_format_datasets,
    registered_box_counts,
)
from soco.utils.metrics_file import read_metrics
from soco_proposals.fileio import atomic_write_text, sha256_of

from .freeze import check_parts, needs_calibration
from .trainer import PARAMETERS_FILE
from .transfer_check import cpu_transfer_model

logger = logging.getLogger(__name__)

TRAIN_NET = Path(__file__).resolve().parents[2] / "tools" / "train_net.py"
RESULT_FILE = "result.json"  # a run's final evaluation; its presence marks the run finished
SETTINGS_FILE = "benchmark_run.json"  # what a run was started with; a re-run must match it
WEIGHTS_HASH = "weights_sha256"  # the settings key of the weights file's content
TASKS = ("bbox", "segm")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Keys each run gets from the benchmark; the user's overrides may not set them.
RESERVED_KEYS = ("SEED", "MODEL.WEIGHTS", "OUTPUT_DIR", "MODEL.FREEZE_PARTS")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class BenchmarkSpec:
    """What to run: ``weights`` maps an init name to a weights file ("" = random init)."""

    config_file: str
    weights: dict[str, str]
    seeds: int
    output_dir: Path
    freeze: tuple[str, ...] = ()  # MODEL.FREEZE_PARTS of every run
    backbone_only: bool = False  # load only the backbone of every weights file
    first_seed: int = 0
    opts: list[str] = field(default_factory=list)
    register_coco: list[list[str]] = field(default_factory=list)
    num_gpus: int = 1


@dataclass(frozen=True)
class BenchmarkRun:
    """One fine-tuning of the benchmark."""

    init: str
    seed: int
    weights: str  # the file given ("" = random init)
    weights_sha256: str  # of its content ("" = random init)
    freeze_parts: tuple[str, ...]
    output_dir: Path
    backbone_only: bool = False
    random_parts: tuple[str, ...] = ()  # frozen parts the loaded weights lack: seeded random init

    @property
    def loaded_weights(self) -> str:
        """``MODEL.WEIGHTS`` of the run: the file, or with ``backbone_only`` its backbone (written by
        :func:`execute_run` beside the seed folders, named by the content it was cut from)."""
        if not self.backbone_only or not self.weights:
            return self.weights
        return str(self.output_dir.parent / f"backbone_{self.weights_sha256[:16]}.pkl")

    def settings(self, spec: BenchmarkSpec) -> dict[str, Any]:
        """Everything that determines the run's result (kept in its folder to catch a changed re-run)."""
        return {
            "config_file": str(Path(spec.config_file).resolve()),
            "weights": self.weights,
            WEIGHTS_HASH: self.weights_sha256,
            "backbone_only": self.backbone_only,
            "seed": self.seed,
            "freeze_parts": list(self.freeze_parts),
            "opts": list(spec.opts),
            "register_coco": [list(r) for r in spec.register_coco],
        }

    def command(self, spec: BenchmarkSpec, train_net: Path, resume: bool) -> list[str]:
        """The ``tools/train_net.py`` command line of this run."""
        datasets = [arg for triple in spec.register_coco for arg in ("--register-coco", *triple)]
        frozen = ["MODEL.FREEZE_PARTS", repr(list(self.freeze_parts))] if self.freeze_parts else []
        cpu = ["MODEL.DEVICE", "cpu"] if spec.num_gpus == 0 else []  # --num-gpus 0: the CPU
        return [
            sys.executable, str(train_net), "--config-file", spec.config_file,
            "--num-gpus", str(spec.num_gpus), *datasets, *(["--resume"] if resume else []), *spec.opts,
            *cpu, "SEED", str(self.seed), "MODEL.WEIGHTS", self.loaded_weights, *frozen,
            "OUTPUT_DIR", str(self.output_dir),
        ]  # fmt: skip


def parse_weights(specs: Sequence[str]) -> dict[str, str]:
    """``["soco=a.pkl", "scratch="]`` -> ``{"soco": "a.pkl", "scratch": ""}``; names are folder names."""
    weights: dict[str, str] = {}
    for text in specs:
        name, sep, path = text.partition("=")
        if not sep or not _NAME.fullmatch(name):
            raise ValueError(
                f"--weights {text!r}: expected NAME=PATH (NAME of letters, digits, '_.-'; PATH may be empty)"
            )
        if name in weights:
            raise ValueError(f"--weights: the name {name!r} is given twice; each init needs its own name")
        weights[name] = path
    if not weights:
        raise ValueError("give at least one --weights NAME=PATH")
    return weights


def parse_parts(text: str) -> tuple[str, ...]:
    """``"backbone,fpn"`` -> ``("backbone", "fpn")`` (``--freeze``); an unknown name is an error."""
    parts = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [part for part in parts if part not in PART_MODEL_KEYS]
    if unknown or not parts:
        raise ValueError(
            f"--freeze {text!r}: expected a comma-separated list of {list(PART_MODEL_KEYS)}, "
            f"got {unknown or text!r}"
        )
    return parts


def _state_dict_of(path: str) -> dict[str, np.ndarray]:
    """The tensors of a weights file (a converted ``.pkl`` or a Detectron2 ``.pth``) as numpy arrays."""
    payload = load_checkpoint(path)
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"weights {path!r}: no state dict (a dict of tensors, or one under 'model')")
    return {
        name: value.numpy() if torch.is_tensor(value) else np.asarray(value)
        for name, value in state.items()
        if torch.is_tensor(value) or isinstance(value, np.ndarray)
    }


def _check_opts(opts: Sequence[str]) -> None:
    if len(opts) % 2:
        raise ValueError(f"the overrides must be KEY VALUE pairs, got an odd number: {list(opts)}")
    reserved = [key for key in opts[0::2] if key in RESERVED_KEYS]
    if reserved:
        raise ValueError(
            f"{reserved}: the benchmark sets {list(RESERVED_KEYS)} per run; remove them from the overrides"
        )


def plan_runs(spec: BenchmarkSpec) -> list[BenchmarkRun]:
    """Check every input (raising an error that names the file or key) and list the runs, init-major."""
    if spec.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {spec.seeds}")
    if spec.first_seed < 0:
        raise ValueError(
            f"--first-seed must be >= 0 (a negative SEED is a random seed), got {spec.first_seed}"
        )
    _check_opts(spec.opts)
    pairs = zip(spec.opts[0::2], spec.opts[1::2], strict=True)
    devices = [value for key, value in pairs if key == "MODEL.DEVICE"]
    if spec.num_gpus == 0 and any(device != "cpu" for device in devices):
        raise ValueError(
            f"--num-gpus 0 runs on the CPU (MODEL.DEVICE cpu), but the overrides set MODEL.DEVICE "
            f"{devices[-1]}; drop it, or give --num-gpus 1 or more"
        )
    if not Path(spec.config_file).is_file():
        raise FileNotFoundError(f"--config-file {spec.config_file!r} does not exist")
    user_datasets = register_coco_format_datasets(spec.register_coco)
    cfg, model = cpu_transfer_model(spec.config_file, spec.opts)
    check_num_classes(cfg, registered_box_counts(user_datasets))
    if len(cfg.DATASETS.TEST) != 1:
        raise ValueError(
            f"DATASETS.TEST is {tuple(cfg.DATASETS.TEST)}; the benchmark evaluates on one dataset"
        )
    try:
        check_parts(model, spec.freeze)
    except ValueError as error:
        raise ValueError(f"--freeze {','.join(spec.freeze)}: {error}") from None
    model_state = model.state_dict()
    held: dict[str, list[str]] = {}
    hashes: dict[str, str] = {}
    for name, path in spec.weights.items():
        held[name], hashes[name] = [], ""
        if not path:
            continue
        if not Path(path).is_file():
            raise FileNotFoundError(f"--weights {name}={path}: the file does not exist")
        weights = _state_dict_of(path)
        parts = transferred_parts(weights, f"--weights {name}={path}")  # refuses a file without a backbone
        check = check_transfer(model_state, weights)
        if not check.ok:
            raise ValueError(
                f"--weights {name}={path} does not fit the model of {spec.config_file}:\n{check.summary()}"
            )
        held[name] = ["backbone"] if spec.backbone_only else parts
        hashes[name] = sha256_of(path)
    random_parts = {name: tuple(p for p in spec.freeze if p not in held[name]) for name in spec.weights}
    for name, parts in random_parts.items():
        if parts:
            calibrated = needs_calibration(model, parts, cfg, spec.weights[name])  # raises: refused row
            logger.info(
                "%s: frozen %s at the seed's random initialisation (not in its weights)%s",
                name, list(parts), ", BN calibrated on training batches" if calibrated else "",
            )  # fmt: skip
    runs = [
        BenchmarkRun(name, seed, str(Path(path).resolve()) if path else "", hashes[name], spec.freeze,
                     spec.output_dir.resolve() / name / f"seed{seed}", spec.backbone_only, random_parts[name])
        for name, path in spec.weights.items()
        for seed in range(spec.first_seed, spec.first_seed + spec.seeds)
    ]  # fmt: skip
    for run in runs:
        started = started_settings(run)  # one without a hash predates them: discarded as stale
        hashed = started is not None and WEIGHTS_HASH in started
        if hashed and _without_hash(started) != _without_hash(run.settings(spec)):
            raise ValueError(
                f"{run.output_dir} was started with other settings ({run.output_dir / SETTINGS_FILE}); "
                "use another OUTPUT_DIR, or delete that folder to run it again"
            )
    return runs


def started_settings(run: BenchmarkRun) -> dict[str, Any] | None:
    """The settings a run's folder was started with (``None``: not started)."""
    settings_file = run.output_dir / SETTINGS_FILE
    return json.loads(settings_file.read_text()) if settings_file.is_file() else None


def _without_hash(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key != WEIGHTS_HASH}


def discard_if_stale(run: BenchmarkRun) -> None:
    """Delete a run's folder started from other weights content than the file has now, or from unrecorded
    content (logged)."""
    started = started_settings(run)
    if started is not None and started.get(WEIGHTS_HASH) != run.weights_sha256:
        logger.warning(
            "%s seed %d: %s was started from weights of sha256 %s, %s now has %s: discarding that run and "
            "starting it again", run.init, run.seed, run.output_dir,
            started.get(WEIGHTS_HASH) or "not recorded",
            run.weights or "random init", run.weights_sha256 or "no file",
        )  # fmt: skip
        shutil.rmtree(run.output_dir)


def final_evaluation(metrics_file: Path) -> dict[str, float | None]:
    """``{"bbox/AP": ..., "segm/AP": ...}`` of the last evaluation in a run's ``metrics.json`` (NaN: None)."""
    evaluations = [record for record in read_metrics(metrics_file) if "bbox/AP" in record]
    if not evaluations:
        raise ValueError(f"{metrics_file}: no evaluation (bbox/AP) recorded")
    last = evaluations[-1]
    result: dict[str, float | None] = {"iteration": last["iteration"]}
    for key in (f"{task}/{metric}" for task in TASKS for metric in METRICS):
        if key in last:
            result[key] = last[key] if math.isfinite(last[key]) else None
    return result


def counted_evaluation(evaluation: dict[str, float | None]) -> dict[str, Any]:
    """``evaluation`` with ``produced_predictions``; without predictions (box AP NaN: Detectron2's COCO
    evaluator had nothing to score) every AP counts as 0, never dropped from the mean. A single undefined
    metric of a run with predictions (APs without small objects) stays ``None``."""
    produced = evaluation.get("bbox/AP") is not None
    counted = dict(evaluation)
    if not produced:
        counted |= {key: 0.0 for key in evaluation if "/" in key}
    return {**counted, "produced_predictions": produced}


def execute_run(run: BenchmarkRun, spec: BenchmarkSpec, train_net: Path = TRAIN_NET) -> dict[str, Any]:
    """Fine-tune and evaluate one run (or resume it), write its ``result.json``; returns that result."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    resume = (run.output_dir / "last_checkpoint").is_file()
    atomic_write_text(run.output_dir / SETTINGS_FILE, [json.dumps(run.settings(spec), indent=1) + "\n"])
    if run.loaded_weights != run.weights and not Path(run.loaded_weights).is_file():
        weights = _state_dict_of(run.weights).items()
        backbone = detectron2_payload({k: v for k, v in weights if PART_MODEL_KEYS["backbone"].search(k)})
        partial = Path(run.loaded_weights + ".partial")
        save_pickle(backbone, str(partial))
        partial.replace(run.loaded_weights)  # complete or absent, whenever the benchmark stops
        logger.info("%s: backbone (%d tensors) in %s", run.init, len(backbone["model"]), run.loaded_weights)
    command = run.command(spec, train_net, resume)
    logger.info("%s seed %d: %s%s", run.init, run.seed, "resuming: " if resume else "", shlex.join(command))
    stdout = run.output_dir / "stdout.txt"
    with open(stdout, "ab") as f:
        process = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if process.returncode:
        tail = "\n".join(stdout.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(
            f"{run.init} seed {run.seed}: tools/train_net.py exited with status {process.returncode} "
            f"(output in {stdout}); run the benchmark again to resume. Last lines:\n{tail}"
        )
    parameters_file = run.output_dir / PARAMETERS_FILE
    if not parameters_file.is_file():
        raise RuntimeError(
            f"{run.init} seed {run.seed}: tools/train_net.py succeeded but did not train (no "
            f"{parameters_file}); its output is in {stdout}"
        )
    model = json.loads(parameters_file.read_text())
    result = {"init": run.init, "seed": run.seed, "output_dir": str(run.output_dir), "resumed": resume}
    result |= {WEIGHTS_HASH: run.weights_sha256, "random_parts": list(run.random_parts)}
    result |= {key: model[key] for key in ("frozen_parts", "trainable_parameters")}
    result |= counted_evaluation(final_evaluation(run.output_dir / "metrics.json"))
    atomic_write_text(run.output_dir / RESULT_FILE, [json.dumps(result, indent=1) + "\n"])
    return result


def run_benchmark(spec: BenchmarkSpec, train_net: Path = TRAIN_NET) -> dict[str, Any]:
    """Check the inputs, run every unfinished (weights, seed), write ``results.{json,md,png}``; returns
    the results (``benchmark_report.results_document``)."""
    from .benchmark_report import results_document, write_report

    runs = plan_runs(spec)
    if not train_net.is_file():
        raise FileNotFoundError(
            f"{train_net} does not exist; the benchmark runs tools/train_net.py of a checkout"
        )
    results = []
    for run in runs:
        discard_if_stale(run)
        result_file = run.output_dir / RESULT_FILE
        if result_file.is_file():
            logger.info("%s seed %d: finished earlier (%s), skipped", run.init, run.seed, result_file)
            results.append(json.loads(result_file.read_text()))
        else:
            results.append(execute_run(run, spec, train_net))
    document = results_document(spec.config_file, spec.opts, results, spec.freeze, spec.backbone_only)
    write_report(document, spec.output_dir)
    return document


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (``tools/benchmark_transfer.py`` and the cluster job share them)."""
    add = parser.add_argument
    add("--config-file", required=True, help="fine-tuning config (detectron2_configs/...)")
    add(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        required=True,
        help="an init to compare, repeatable; an empty PATH (scratch=) is random init",
    )
    add(
        "--seeds",
        type=int,
        required=True,
        help="fine-tunings per init (SEED first-seed, first-seed + 1, ...)",
    )
    add("--first-seed", type=int, default=0)
    add(
        "--freeze",
        type=_argparse_parts,
        default=(),
        metavar="PARTS",
        help="MODEL.FREEZE_PARTS of every run, comma-separated (backbone, fpn, box_head): e.g. "
        "backbone,fpn,box_head; a part a weights file lacks is frozen at the seed's random init, BN "
        "calibrated on training batches",
    )
    add("--frozen", nargs=0, action=_Replaced, help=argparse.SUPPRESS)
    add("--backbone-only", action="store_true", help="load only the backbone of every weights file")
    add_register_coco_argument(parser, use="DATASETS.TRAIN/TEST of every run")
    add(
        "--num-gpus",
        type=int,
        default=1,
        help="GPUs of each run (tools/train_net.py --num-gpus); 0: one process on the CPU (MODEL.DEVICE cpu)",
    )
    add("output_dir", type=Path, metavar="OUTPUT_DIR", help="<NAME>/seed<k>/ per run, results.{json,md,png}")
    add("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of every run")  # fmt: skip


def _argparse_parts(text: str) -> tuple[str, ...]:
    try:
        return parse_parts(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _Replaced(argparse.Action):
    """``--frozen`` (per-file freezing, removed): an error naming ``--freeze``."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "--frozen was replaced by --freeze PARTS, the same parts frozen for every weights file: "
            "--freeze backbone,fpn,box_head for the old SoCo FPN rows, --freeze backbone for a backbone probe"
        )


def spec_from_args(args: argparse.Namespace) -> BenchmarkSpec:
    """The :class:`BenchmarkSpec` of parsed :func:`add_benchmark_arguments` options."""
    return BenchmarkSpec(
        config_file=str(Path(args.config_file).resolve()),  # absolute: a cluster job may start elsewhere
        weights=parse_weights(args.weights),
        seeds=args.seeds,
        output_dir=Path(args.output_dir),
        freeze=tuple(args.freeze),
        backbone_only=args.backbone_only,
        first_seed=args.first_seed,
        opts=list(args.opts),
        register_coco=[
            [name, str(Path(j).resolve()), str(Path(d).resolve())] for name, j, d in args.register_coco or []
        ],
        num_gpus=args.num_gpus,
    )
