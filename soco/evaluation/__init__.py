"""Probes of a representation: kNN and linear classification of frozen image and box features.

* ``knn`` / ``linear_probe``: the classifiers, on feature tensors;
* ``datasets``: the labelled probe sets (ImageFolder images, boxes of a registered dataset), cached;
* ``encoder``: frozen encoders that pool boxes as the detector will (FPN or C4), from converted weights;
* ``weights``: converted weights of a checkpoint file or of a model in training;
* ``offline``: rows of checkpoint files and a random-init baseline, as a markdown table / JSON;
* ``probes``: run them all (distributed-aware) -> ``probe/image_knn``, ``probe/object_knn``,
  ``probe/object_linear``, ``probe/seconds``.
"""

from .datasets import (
    BoxSplit,
    ImageFolderSplit,
    ProbeSample,
    ProbeSplit,
    load_box_probe_set,
    load_image_folder_probe_set,
)
from .encoder import (
    PROBE_ENCODERS,
    C4ProbeEncoder,
    FPNProbeEncoder,
    ProbeArchitecture,
    ProbeEncoder,
    architecture_from_weights,
    build_probe_encoder,
)
from .knn import knn_accuracy, weighted_knn_scores
from .linear_probe import fit_linear_probe, linear_probe_accuracy
from .offline import ProbeRow, chance_levels, config_weights, markdown_table, probe_rows, write_rows_json
from .probes import (
    ProbeData,
    ProbeEvaluator,
    ProbeSettings,
    check_probe_config,
    embed_split,
    format_results,
    run_probes,
)
from .weights import model_weights, read_weights

__all__ = [
    "PROBE_ENCODERS",
    "BoxSplit",
    "C4ProbeEncoder",
    "FPNProbeEncoder",
    "ImageFolderSplit",
    "ProbeArchitecture",
    "ProbeData",
    "ProbeEncoder",
    "ProbeEvaluator",
    "ProbeRow",
    "ProbeSample",
    "ProbeSettings",
    "ProbeSplit",
    "architecture_from_weights",
    "build_probe_encoder",
    "chance_levels",
    "check_probe_config",
    "config_weights",
    "embed_split",
    "fit_linear_probe",
    "format_results",
    "knn_accuracy",
    "linear_probe_accuracy",
    "load_box_probe_set",
    "load_image_folder_probe_set",
    "markdown_table",
    "model_weights",
    "probe_rows",
    "read_weights",
    "run_probes",
    "weighted_knn_scores",
    "write_rows_json",
]
