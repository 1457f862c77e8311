"""The probes run offline on checkpoint files: one row per weights (and a random-init baseline row).

Every row shares one :class:`ProbeData`, so the probe images are decoded once for all rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from soco_proposals.fileio import atomic_write_text

from .probes import ProbeData, ProbeEvaluator, ProbeSettings
from .weights import model_weights

__all__ = ["PROBE_COLUMNS", "ProbeRow", "chance_levels", "config_weights", "markdown_table", "probe_rows",
           "write_rows_json"]  # fmt: skip

PROBE_COLUMNS = ("probe/image_knn", "probe/object_knn", "probe/object_linear", "probe/seconds")
RANDOM_INIT = "random init"


@dataclass
class ProbeRow:
    """The probe results of one set of weights (``source``: its file, or how the random init was built)."""

    name: str
    source: str
    results: dict[str, float]


def config_weights(cfg: CfgNode) -> dict[str, np.ndarray]:
    """Converted weights of a freshly built pretraining model of ``cfg`` (for its architecture)."""
    return model_weights(build_model(cfg))


def probe_rows(
    named_weights: Sequence[tuple[str, str, Mapping[str, np.ndarray]]],
    data: ProbeData,
    settings: ProbeSettings,
    random_init: Mapping[str, np.ndarray] | None = None,
    random_init_source: str = "",
    device: str = "cpu",
    stride_in_1x1: bool = False,
) -> list[ProbeRow]:
    """Rows of ``(name, source, converted weights)``; first a random-init row with the architecture of
    ``random_init`` (weights not loaded: Detectron2's initialisation) when it is given."""
    rows = []
    if random_init is not None:
        evaluator = ProbeEvaluator(data, settings, device, stride_in_1x1)
        evaluator.build_encoder(random_init)
        rows.append(ProbeRow(RANDOM_INIT, random_init_source, evaluator(None)))
    for name, source, weights in named_weights:
        rows.append(ProbeRow(name, source, ProbeEvaluator(data, settings, device, stride_in_1x1)(weights)))
    return rows


def chance_levels(data: ProbeData) -> dict[str, float]:
    """Accuracy in percent of always answering the most frequent training class, per probe."""
    chance = {}
    for keys, train, test in (
        (("probe/image_knn",), data.image_train, data.image_val),
        (("probe/object_knn", "probe/object_linear"), data.box_train, data.box_test),
    ):
        if train is None:
            continue
        train_labels = np.concatenate([train.sample_labels(i) for i in range(len(train))])
        test_labels = np.concatenate([test.sample_labels(i) for i in range(len(test))])
        majority = np.bincount(train_labels).argmax()
        chance |= {key: float((test_labels == majority).mean() * 100) for key in keys}
    return chance


def markdown_table(rows: Sequence[ProbeRow], chance: Mapping[str, float]) -> str:
    """Rows = weights, columns = the probes that ran + seconds; a last row gives the chance level."""
    columns = [c for c in PROBE_COLUMNS if any(c in row.results for row in rows)]
    header = ["weights", *(c.removeprefix("probe/") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{row.results[c]:.1f}" if c in row.results else "" for c in columns]
        lines.append("| " + " | ".join([row.name, *cells]) + " |")
    chance_cells = [f"{chance[c]:.1f}" if c in chance else "" for c in columns]
    lines.append("| " + " | ".join(["chance (majority class)", *chance_cells]) + " |")
    return "\n".join(lines)


def write_rows_json(
    path: str, rows: Sequence[ProbeRow], chance: Mapping[str, float], settings: ProbeSettings
) -> None:
    """``{"rows": [{name, source, results}], "chance": {...}, "settings": {...}}``, written atomically."""
    payload = {"rows": [asdict(row) for row in rows], "chance": dict(chance), "settings": asdict(settings)}
    atomic_write_text(path, [json.dumps(payload, indent=2) + "\n"])
