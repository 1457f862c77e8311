"""The transfer benchmark's report: ``results.json`` (the protocol, the runs and, per init, each metric's
mean, std and 95 % interval), ``results.md`` and ``results.png`` (AP per init, one dot per seed, the mean
marked)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soco_proposals.fileio import atomic_write, atomic_write_text

TABLE_METRICS = ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50")
PLOT_PANELS = {"bbox/AP": "box AP", "segm/AP": "mask AP"}
# Student's t, 97.5 % quantile (two-sided 95 % interval), for 1..30 degrees of freedom (standard tables).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
NORMAL_975 = 1.959964
NO_PREDICTIONS_MARK = "†"  # per-seed value of a run without predictions (counted as 0)
RESUMED_MARK = "*"  # per-seed value of a run resumed from its last checkpoint


def t_quantile_975(df: int) -> float:
    """Student's t 97.5 % quantile: the table up to 30 degrees of freedom, above it the Cornish-Fisher
    expansion around the normal quantile (within 1e-3 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = NORMAL_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def seed_statistics(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "ci95"}`` of the defined (not None) values: ``std`` is the sample one (n - 1),
    ``ci95`` the 95 % Student t interval of the mean ``[low, high]`` (None below two values)."""
    known = [v for v in values if v is not None]
    n = len(known)
    mean = float(np.mean(known)) if n else None
    std = float(np.std(known, ddof=1)) if n > 1 else None
    ci95 = None
    if n > 1:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        ci95 = [mean - half, mean + half]
    return {"mean": mean, "std": std, "n": n, "ci95": ci95}


def _one(init: str, runs: list[dict], key: str) -> Any:
    values = {json.dumps(run[key]) for run in runs}
    if len(values) != 1:
        raise ValueError(f"{init}: its runs differ in {key!r} ({sorted(values)}); one protocol per row")
    return runs[0][key]


def results_document(
    config_file: str,
    opts: Sequence[str],
    runs: list[dict],
    freeze: Sequence[str] = (),
    backbone_only: bool = False,
) -> dict[str, Any]:
    """The ``results.json`` content: the protocol, the runs and, per init, its frozen parts, trainable
    parameters, run counts and each metric's mean / std / n / ci95 (a run without predictions counts as
    0)."""
    inits = list(dict.fromkeys(run["init"] for run in runs))
    metrics = [key for key in dict.fromkeys(k for run in runs for k in run) if "/" in key]
    summary = {}
    for init in inits:
        rows = [run for run in runs if run["init"] == init]
        summary[init] = {
            "frozen_parts": _one(init, rows, "frozen_parts"),
            "random_parts": _one(init, rows, "random_parts"),
            "trainable_parameters": _one(init, rows, "trainable_parameters"),
            "n_runs": len(rows),
            "n_with_predictions": sum(run["produced_predictions"] for run in rows),
            "n_resumed": sum(run["resumed"] for run in rows),
            **{metric: seed_statistics([run.get(metric) for run in rows]) for metric in metrics},
        }
    seeds = sorted({run["seed"] for run in runs})
    transfer = "the backbone of each weights file" if backbone_only else "every part each weights file holds"
    return {
        "config_file": config_file,
        "frozen": bool(freeze),
        "freeze_parts": list(freeze),
        "backbone_only": backbone_only,
        "opts": list(opts),
        "seeds": seeds,
        "held_equal": [
            f"config {Path(config_file).name} and the overrides {list(opts)} (schedule, data, model)",
            f"seeds {seeds}",
            f"frozen parts: MODEL.FREEZE_PARTS {list(freeze)} for every row",
            "readout: the final evaluation on DATASETS.TEST after SOLVER.MAX_ITER",
            f"transfer: {transfer}",
        ],
        "runs": runs,
        "summary": summary,
    }


def _cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    if stats["std"] is None:
        return f"{stats['mean']:.1f} (n=1)"
    low, high = stats["ci95"]
    return f"{stats['mean']:.1f} ± {stats['std']:.1f} [{low:.1f}, {high:.1f}]"


def _runs_cell(row: dict) -> str:
    text = f"{row['n_runs']}"
    failed = row["n_runs"] - row["n_with_predictions"]
    if failed:
        text += f" ({row['n_with_predictions']}/{row['n_runs']} produced predictions; {failed} counted as 0)"
    if row["n_resumed"]:
        text += f", {row['n_resumed']} resumed"
    return text


def _seed_value(run: dict, metric: str) -> str:
    value = "n/a" if run.get(metric) is None else f"{run[metric]:.1f}"
    return value + NO_PREDICTIONS_MARK * (not run["produced_predictions"]) + RESUMED_MARK * run["resumed"]


def results_markdown(document: dict[str, Any]) -> str:
    """The protocol, then per init: frozen parts, trainable parameters, runs, mean ± std [95 % interval]
    of the headline metrics over the seeds, and the per-seed values."""
    metrics = [m for m in TABLE_METRICS if any(m in s for s in document["summary"].values())]
    per_seed = [m for m in PLOT_PANELS if m in metrics]
    mode = "frozen " + ", ".join(document["freeze_parts"]) if document["frozen"] else "fine-tuned"
    lines = [
        f"Transfer benchmark: {Path(document['config_file']).name}, {mode}, seeds {document['seeds']}",
        "",
        "Held equal across rows: " + "; ".join(document["held_equal"]) + ".",
        "",
        "| init | frozen | trainable parameters | runs | "
        + " | ".join(metrics) + " | " + " | ".join(f"{m} per seed" for m in per_seed) + " |",
        "|" + "---|" * (4 + len(metrics) + len(per_seed)),
    ]  # fmt: skip
    for init, row in document["summary"].items():
        runs = sorted((r for r in document["runs"] if r["init"] == init), key=lambda r: r["seed"])
        seeds = [", ".join(_seed_value(r, m) for r in runs) for m in per_seed]
        frozen = ", ".join(row["frozen_parts"]) or "nothing"
        if row["random_parts"]:
            frozen += f" ({', '.join(row['random_parts'])} at random init)"
        cells = [init, frozen, f"{row['trainable_parameters']:,}", _runs_cell(row)]
        lines.append("| " + " | ".join([*cells, *(_cell(row[m]) for m in metrics), *seeds]) + " |")
    lines += [
        "",
        f"mean ± sample std [95 % Student t interval] over the seeds; {NO_PREDICTIONS_MARK}: no predictions, "
        f"counted as AP 0; {RESUMED_MARK}: resumed from its last checkpoint.",
    ]
    return "\n".join(lines) + "\n"


def plot_png(document: dict[str, Any]) -> bytes:
    """PNG of one panel per task (box AP, mask AP when there is a mask head): a dot per seed (a cross for a
    run without predictions, counted as 0), the mean as a bar across, per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in PLOT_PANELS if any(m in s for s in document["summary"].values())]
    inits = list(document["summary"])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.2 + 1.6 * len(inits) * len(panels), 3.6), squeeze=False
    )
    for ax, metric in zip(axes[0], panels, strict=True):
        for x, init in enumerate(inits):
            runs = [r for r in document["runs"] if r["init"] == init and r.get(metric) is not None]
            offsets = np.linspace(-0.12, 0.12, len(runs)) if len(runs) > 1 else np.zeros(len(runs))
            for offset, run in zip(offsets, runs, strict=True):
                marker = "o" if run["produced_predictions"] else "x"
                ax.scatter(x + offset, run[metric], s=22, color=f"C{x}", marker=marker, alpha=0.8, zorder=3)
            mean = document["summary"][init][metric]["mean"]
            if mean is not None:
                ax.hlines(mean, x - 0.25, x + 0.25, color="black", linewidth=2, zorder=4)
        ax.set_xticks(range(len(inits)), inits)
        ax.set_xlim(-0.6, len(inits) - 0.4)
        ax.set_ylabel(PLOT_PANELS[metric])
        ax.grid(axis="y", alpha=0.3)
    mode = "frozen " + ",".join(document["freeze_parts"]) if document["frozen"] else "fine-tuned"
    title = f"{Path(document['config_file']).stem} ({mode}): one dot per seed (x: no predictions), bar = mean"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_report(document: dict[str, Any], output_dir: Path) -> None:
    """``results.json``, ``results.md`` and ``results.png`` in ``output_dir``, each written atomically."""
    atomic_write_text(output_dir / "results.json", [json.dumps(document, indent=1) + "\n"])
    atomic_write_text(output_dir / "results.md", [results_markdown(document)])
    png = plot_png(document)
    atomic_write(output_dir / "results.png", lambda f: f.write(png))
