"""The probes run offline on checkpoint files: one row per weights, and random-init baseline rows.

Every row shares one :class:`ProbeData`, so the probe images are decoded once for all rows. A random-init
row is the pretraining model of a config as pretraining builds it (seeded, the model's own initialisation,
e.g. SoCo's zero-initialised residual gammas): the weights the online probes measure at iteration 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from soco_proposals.fileio import atomic_write_text

from .datasets import ProbeSplit
from .encoder import READOUTS
from .probes import PROBE_KEYS, ProbeData, ProbeEvaluator, ProbeSettings
from .weights import model_weights

logger = logging.getLogger(__name__)

__all__ = ["PROBE_COLUMNS", "ProbeRow", "chance_levels", "config_weights", "markdown_table", "probe_rows",
           "random_init_weights", "write_rows_json"]  # fmt: skip

PROBE_COLUMNS = (*PROBE_KEYS, "probe/seconds")
FAILED = "failed"  # a table cell of a NaN result: the probe failed (non-finite features)


@dataclass
class ProbeRow:
    """The probe results of one set of weights (``source``: its file, or how the random init was built;
    ``readout``: its own object-level readout, :data:`~soco.evaluation.encoder.READOUTS` kind)."""

    name: str
    source: str
    readout: str
    results: dict[str, float]


def config_weights(cfg: CfgNode) -> dict[str, np.ndarray]:
    """Converted weights of a freshly built pretraining model of ``cfg`` (RNG state as it is)."""
    return model_weights(build_model(cfg))


def random_init_weights(cfg: CfgNode) -> tuple[dict[str, np.ndarray], int]:
    """Converted weights of the pretraining model of ``cfg`` as rank 0 of ``tools/pretrain_net.py`` builds it
    (every RNG seeded with ``SEED``, or 0 when it is negative, then ``build_model``) and that seed."""
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    seed_all_rng(seed)
    return config_weights(cfg), seed


def random_init_name(config_file: str) -> str:
    """Row name of the random init of a pretraining config: ``random init (SoCo_FPN)``."""
    return f"random init ({os.path.splitext(os.path.basename(config_file))[0]})"


def probe_rows(
    named_weights: Sequence[tuple[str, str, Mapping[str, np.ndarray]]],
    data: ProbeData,
    settings: ProbeSettings,
    device: str = "cpu",
    stride_in_1x1: bool = False,
) -> list[ProbeRow]:
    """One row per ``(name, source, converted weights)``, each probed with an encoder of its architecture."""
    rows = []
    for name, source, weights in named_weights:
        evaluator = ProbeEvaluator(data, settings, device, stride_in_1x1)
        results = evaluator(weights)
        rows.append(ProbeRow(name, source, evaluator.architecture.kind, results))
    return rows


def _decoded_labels(split: ProbeSplit) -> np.ndarray:
    """(L,) labels of the images of ``split`` that decode (decoding any not decoded yet, once): the probes
    leave the others out, and so must their chance level."""
    labels = [split.sample_labels(i) for i in range(len(split)) if split[i] is not None]
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def chance_levels(data: ProbeData) -> dict[str, float]:
    """Accuracy in percent of always answering the most frequent training class, per probe, over the
    images that decode (those the probes use); a probe with no decoded training or test label has none
    (left out, with an error line)."""
    chance = {}
    object_keys = [key for key in PROBE_KEYS if key.startswith("probe/object_")]
    for keys, train, test in (
        (("probe/image_knn",), data.image_train, data.image_val),
        (object_keys, data.box_train, data.box_test),
    ):
        if train is None:
            continue
        train_labels, test_labels = _decoded_labels(train), _decoded_labels(test)
        if not len(train_labels) or not len(test_labels):
            logger.error(
                "%s: no chance level: %d training and %d test labels of decoded images",
                ", ".join(keys), len(train_labels), len(test_labels),
            )  # fmt: skip
            continue
        majority = np.bincount(train_labels).argmax()
        chance |= {key: float((test_labels == majority).mean() * 100) for key in keys}
    return chance


def _cell(value: float) -> str:
    return FAILED if math.isnan(value) else f"{value:.1f}"


def markdown_table(rows: Sequence[ProbeRow], chance: Mapping[str, float]) -> str:
    """Rows = weights (with their own readout's kind), columns = the probes that ran + seconds; a last row
    gives the chance level, a NaN result reads ``failed``; a legend below says what each column measures."""
    columns = [c for c in PROBE_COLUMNS if any(c in row.results for row in rows)]
    header = ["weights", "readout", *(c.removeprefix("probe/") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_cell(row.results[c]) if c in row.results else "" for c in columns]
        lines.append("| " + " | ".join([row.name, row.readout, *cells]) + " |")
    chance_cells = [f"{chance[c]:.1f}" if c in chance else "" for c in columns]
    lines.append("| " + " | ".join(["chance (majority class)", "", *chance_cells]) + " |")
    legend = [f"- {key.removeprefix('probe/')}: {PROBE_KEYS[key]}" for key in columns if key in PROBE_KEYS]
    kinds = sorted({row.readout for row in rows})
    legend += [f"- readout {kind}: own object readout = {READOUTS['own'][kind]}" for kind in kinds]
    legend.append(f"- {FAILED}: the features were not finite (a diverged model); see the log")
    return "\n".join([*lines, "", *legend])


def write_rows_json(
    path: str, rows: Sequence[ProbeRow], chance: Mapping[str, float], settings: ProbeSettings
) -> None:
    """``{"rows": [{name, source, results}], "chance": {...}, "settings": {...}}``, written atomically."""
    payload = {"rows": [asdict(row) for row in rows], "chance": dict(chance), "settings": asdict(settings)}
    atomic_write_text(path, [json.dumps(payload, indent=2) + "\n"])
