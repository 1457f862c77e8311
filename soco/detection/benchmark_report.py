"""The transfer benchmark's report: ``results.json`` (runs and mean / std per init), ``results.md`` and
``results.png`` (AP per init, one dot per seed, the mean marked)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soco_proposals.fileio import atomic_write, atomic_write_text

TABLE_METRICS = ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50")
PLOT_PANELS = {"bbox/AP": "box AP", "segm/AP": "mask AP"}


def seed_statistics(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "std", "n"}`` of the known (not None) values; ``std`` is the sample one (n - 1)."""
    known = [v for v in values if v is not None]
    n = len(known)
    return {
        "mean": float(np.mean(known)) if n else None,
        "std": float(np.std(known, ddof=1)) if n > 1 else None,
        "n": n,
    }


def results_document(config_file: str, frozen: bool, opts: Sequence[str], runs: list[dict]) -> dict[str, Any]:
    """The ``results.json`` content: the runs and, per init, each metric's mean / std / n."""
    inits = list(dict.fromkeys(run["init"] for run in runs))
    metrics = [key for key in dict.fromkeys(k for run in runs for k in run) if "/" in key]
    summary = {
        init: {m: seed_statistics([r.get(m) for r in runs if r["init"] == init]) for m in metrics}
        for init in inits
    }
    return {
        "config_file": config_file,
        "frozen": frozen,
        "opts": list(opts),
        "seeds": sorted({run["seed"] for run in runs}),
        "runs": runs,
        "summary": summary,
    }


def _cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    return f"{stats['mean']:.1f}" + (f" ± {stats['std']:.1f}" if stats["std"] is not None else "")


def results_markdown(document: dict[str, Any]) -> str:
    """Per init: mean ± std of the headline metrics over the seeds, then the per-seed values."""
    metrics = [m for m in TABLE_METRICS if any(m in s for s in document["summary"].values())]
    per_seed = [m for m in PLOT_PANELS if m in metrics]
    mode = "frozen (detection probe)" if document["frozen"] else "full fine-tuning"
    lines = [
        f"Transfer benchmark: {Path(document['config_file']).name}, {mode}, seeds {document['seeds']}",
        "",
        "| init | n | " + " | ".join(metrics) + " | " + " | ".join(f"{m} per seed" for m in per_seed) + " |",
        "|" + "---|" * (2 + len(metrics) + len(per_seed)),
    ]
    for init, summary in document["summary"].items():
        runs = sorted((r for r in document["runs"] if r["init"] == init), key=lambda r: r["seed"])
        seeds = [", ".join("n/a" if r.get(m) is None else f"{r[m]:.1f}" for r in runs) for m in per_seed]
        cells = [init, str(len(runs)), *(_cell(summary[m]) for m in metrics), *seeds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_png(document: dict[str, Any]) -> bytes:
    """PNG of one panel per task (box AP, mask AP when there is a mask head): a dot per seed, the mean
    as a bar across, per init."""
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
            values = [r[metric] for r in document["runs"] if r["init"] == init and r.get(metric) is not None]
            offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(np.add(x, offsets), values, s=22, color=f"C{x}", alpha=0.8, zorder=3)
            mean = document["summary"][init][metric]["mean"]
            if mean is not None:
                ax.hlines(mean, x - 0.25, x + 0.25, color="black", linewidth=2, zorder=4)
        ax.set_xticks(range(len(inits)), inits)
        ax.set_xlim(-0.6, len(inits) - 0.4)
        ax.set_ylabel(PLOT_PANELS[metric])
        ax.grid(axis="y", alpha=0.3)
    mode = "frozen" if document["frozen"] else "fine-tuned"
    fig.suptitle(f"{Path(document['config_file']).stem} ({mode}): one dot per seed, bar = mean", fontsize=9)
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
