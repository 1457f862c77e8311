"""Probes of a representation: kNN and linear classification of frozen image and box features.

* ``knn`` / ``linear_probe``: the classifiers, on feature tensors;
* ``datasets``: the labelled probe sets (ImageFolder images, boxes of a registered dataset), cached;
* ``encoder``: frozen encoders that pool boxes as the detector will (FPN or C4, the "own" readout) and as
  every method can (the "shared" readout), from converted weights;
* ``weights``: converted weights of a checkpoint file or of a model in training;
* ``offline``: rows of checkpoint files and random-init baselines, as a markdown table / JSON;
* ``probes``: run them all (distributed-aware) -> :data:`PROBE_KEYS` (``probe/image_knn``,
  ``probe/object_{knn,linear}`` and ``probe/object_{knn,linear}_shared``; NaN: failed) and ``probe/seconds``.
"""

from .datasets import (
    BoxSplit,
    ImageFolderSplit,
    ProbeSample,
    ProbeSplit,
    check_disjoint_images,
    load_box_probe_set,
    load_image_folder_probe_set,
)
from .encoder import (
    PROBE_ENCODERS,
    READOUTS,
    C4ProbeEncoder,
    FPNProbeEncoder,
    ProbeArchitecture,
    ProbeEncoder,
    architecture_from_weights,
    build_probe_encoder,
)
from .knn import KNN_NORMALIZATIONS, knn_accuracy, normalize_knn_features, weighted_knn_scores
from .linear_probe import fit_linear_probe, linear_probe_accuracy
from .offline import (
    ProbeRow,
    chance_levels,
    config_weights,
    markdown_table,
    probe_rows,
    random_init_name,
    random_init_weights,
    write_rows_json,
)
from .probes import (
    PROBE_KEYS,
    ProbeData,
    ProbeEvaluator,
    ProbeSettings,
    check_probe_config,
    describe_readouts,
    embed_split,
    format_results,
    run_probes,
)
from .weights import model_weights, read_weights

__all__ = [
    "KNN_NORMALIZATIONS",
    "PROBE_ENCODERS",
    "PROBE_KEYS",
    "READOUTS",
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
    "check_disjoint_images",
    "check_probe_config",
    "config_weights",
    "describe_readouts",
    "embed_split",
    "fit_linear_probe",
    "format_results",
    "knn_accuracy",
    "linear_probe_accuracy",
    "load_box_probe_set",
    "load_image_folder_probe_set",
    "markdown_table",
    "model_weights",
    "normalize_knn_features",
    "probe_rows",
    "random_init_name",
    "random_init_weights",
    "read_weights",
    "run_probes",
    "weighted_knn_scores",
    "write_rows_json",
]
