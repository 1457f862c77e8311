"""Probe curves of a pretraining run: read from its metrics.json, drawn with matplotlib (Agg).

A failed probe (NaN: non-finite features) is never drawn as a value: it is a cross on the x axis in its
curve's colour, labelled "<probe> failed", and the curve breaks there.
"""

from __future__ import annotations

import io
import math

from soco.utils.metrics_file import read_metrics
from soco_proposals.fileio import atomic_write

__all__ = ["read_probe_curves", "plot_probe_curves"]

#: Panels of the plot: title and the probe keys drawn in it.
PANELS = (
    ("object level, own readout", ("probe/object_knn", "probe/object_linear")),
    ("object level, shared readout", ("probe/object_knn_shared", "probe/object_linear_shared")),
    ("image level", ("probe/image_knn",)),
)


def read_probe_curves(metrics_json: str) -> dict[str, list[tuple[int, float]]]:
    """``{probe key: [(iteration, accuracy), ...]}`` sorted by iteration, from Detectron2's metrics.json
    (:func:`~soco.utils.metrics_file.read_metrics`; a later line for the same iteration wins, as after a
    resume)."""
    curves: dict[str, dict[int, float]] = {}
    for row in read_metrics(metrics_json):
        for key, value in row.items():
            if key.startswith("probe/") and key != "probe/seconds":
                curves.setdefault(key, {})[int(row["iteration"])] = float(value)
    if not curves:
        raise ValueError(
            f"{metrics_json}: no probe/ entries; pretrain with PRETRAIN.EVAL_PERIOD > 0 and probe data "
            "(PRETRAIN.PROBES.IMAGE_ROOT and/or BOX_TRAIN / BOX_TEST)"
        )
    return {key: sorted(points.items()) for key, points in sorted(curves.items())}


def plot_probe_curves(curves: dict[str, list[tuple[int, float]]], output_png: str, title: str = "") -> None:
    """Accuracy (%) against iteration, one panel per probe level that has data; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, [k for k in keys if k in curves]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for axis, (name, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            iterations, values = zip(*curves[key], strict=True)
            probe = key.removeprefix("probe/")
            (line,) = axis.plot(iterations, values, marker="o", label=probe)
            failed = [it for it, value in curves[key] if math.isnan(value)]
            if failed:
                zeros = [0.0] * len(failed)
                axis.plot(failed, zeros, "x", color=line.get_color(), ms=10, label=f"{probe} failed")
        axis.set_title(name)
        axis.set_xlabel("iteration (0 = initialisation)")
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(output_png, lambda f: f.write(buffer.getvalue()))
