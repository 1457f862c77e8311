#!/usr/bin/env python
"""The pretraining probes offline: image-level kNN, object-level kNN and linear probe, a row per weights.

  python tools/evaluate_probes.py --weights soco=output/soco_fpn/model_final.pth \\
      --weights moco=moco_v2_200ep_pretrain.pth.tar \\
      --random-init soco/configs/SoCo_FPN_100ep.yaml --random-init soco/configs/MoCoV2_200ep.yaml \\
      --image-root imagenet_val_subset/ \\
      --register-coco boxes_train train.json images/ --register-coco boxes_val val.json images/ \\
      --box-train boxes_train --box-test boxes_val --output probes.json

Weights: our pretraining .pth, a converted Detectron2 .pkl, or any official release the converters read
(MoCo, SwAV, DenseCL, SoCo, torchvision). Boxes are read out twice: as each method's detector pools them
(own readout; FPN weights with a box head: canonical FPN level + box head; the others: res4 RoIAlign + res5)
and the same way for every method (shared readout: res4 RoIAlign + res5, the *_shared columns), so rows of
different methods compare in the shared columns. Each --random-init CONFIG adds a baseline row: the
pretraining model of that config seeded with its SEED (0 if negative) and initialised as pretraining
initialises it, i.e. the weights the online probes measure at iteration 0; give one per method you compare.
A failed probe (non-finite features) reads "failed" (NaN in the JSON). Probe settings default to
PRETRAIN.PROBES.* of --config-file (or of soco's defaults).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from detectron2.config import get_cfg

from soco.config import add_soco_config
from soco.data import add_register_coco_argument, register_coco_format_datasets
from soco.engine.pretrain import load_pretrain_cfg
from soco.evaluation import (
    KNN_NORMALIZATIONS,
    ProbeData,
    ProbeSettings,
    chance_levels,
    markdown_table,
    probe_rows,
    random_init_name,
    random_init_weights,
    read_weights,
    write_rows_json,
)
from soco.utils.cli import run


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _default_cfg():
    cfg = get_cfg()
    add_soco_config(cfg)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--weights",
        type=_named_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="weights to probe (repeatable): our .pth, a converted .pkl or an official release",
    )
    add(
        "--random-init",
        action="append",
        nargs="?",
        default=[],
        metavar="CONFIG",
        help="add the random-init row of this pretraining config's model, seeded and initialised as "
        "pretraining does (repeatable: one per method)",
    )
    add("--config-file", default="", help="pretraining config of the probe defaults")
    add("--image-root", default="", help="image folder with train/<class>/* and val/<class>/*")
    add("--box-train", default="", help="registered dataset of labelled boxes to fit the probes on")
    add("--box-test", default="", help="registered dataset of labelled boxes to score them on")
    add_register_coco_argument(parser, use="--box-train / --box-test")
    add("--device", default="cpu", help="device of the frozen encoder (cpu, cuda)")
    add(
        "--trust-pickle",
        action="store_true",
        help="unpickle any object in the weights, not only numpy arrays (.pkl) or tensors (trusted files)",
    )
    add("--output", default="", metavar="FILE.json", help="also write the rows as JSON (atomically)")
    defaults = _default_cfg().PRETRAIN.PROBES
    for flag in ProbeSettings.config_fields():
        key = flag.upper()
        add(
            "--" + flag.replace("_", "-"),
            type=type(defaults[key]),
            default=None,
            help=f"default: PRETRAIN.PROBES.{key} of --config-file ({defaults[key]} in soco's defaults)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if None in args.random_init:
        parser.error(
            "--random-init takes a pretraining config now (--random-init CONFIG, repeatable, e.g. "
            "--random-init soco/configs/SoCo_FPN_100ep.yaml --random-init soco/configs/MoCoV2_200ep.yaml): "
            "each gives the random-init row of that method's model"
        )
    if not args.weights and not args.random_init:
        parser.error("nothing to probe: give --weights NAME=PATH and/or --random-init CONFIG")
    if not args.image_root and not args.box_train:
        parser.error("no probe data: give --image-root and/or --box-train NAME --box-test NAME")
    if bool(args.box_train) != bool(args.box_test):
        parser.error("--box-train and --box-test go together")
    names = [name for name, _ in args.weights] + [random_init_name(c) for c in args.random_init]
    if len(set(names)) != len(names):
        parser.error(f"--weights names and --random-init configs must differ, got rows {names}")
    # every file is read (and converted) before any work, so a bad one stops the run at once
    random_inits = []  # (row, the config's MODEL.RESNETS.STRIDE_IN_1X1), as the online probes of that config
    for config_file in args.random_init:
        init_cfg = load_pretrain_cfg(config_file, ["MODEL.DEVICE", "cpu"])
        weights, seed = random_init_weights(init_cfg)
        row = (random_init_name(config_file), f"{config_file} (SEED {seed})", weights)
        random_inits.append((row, init_cfg.MODEL.RESNETS.STRIDE_IN_1X1))
    named = [(name, path, read_weights(path, args.trust_pickle)[0]) for name, path in args.weights]
    cfg = load_pretrain_cfg(args.config_file, ["MODEL.DEVICE", "cpu"]) if args.config_file else _default_cfg()
    flags = ProbeSettings.config_fields()
    overrides = {flag: value for flag in flags if (value := getattr(args, flag)) is not None}
    settings = replace(ProbeSettings.from_config(cfg), **overrides)
    if settings.knn_normalization not in KNN_NORMALIZATIONS:
        parser.error(f"--knn-normalization {settings.knn_normalization!r}: one of {KNN_NORMALIZATIONS}")
    register_coco_format_datasets(args.register_coco)
    data = ProbeData.load(settings, args.image_root, args.box_train, args.box_test)
    print(f"probe data: {data.describe()}", flush=True)
    rows = [probe_rows([row], data, settings, args.device, stride)[0] for row, stride in random_inits]
    stride_in_1x1 = bool(args.config_file) and cfg.MODEL.RESNETS.STRIDE_IN_1X1
    rows += probe_rows(named, data, settings, args.device, stride_in_1x1)
    inits, trained = rows[: len(random_inits)], rows[len(random_inits) :]
    unmatched = [f"{r.name} ({r.readout})" for r in trained if r.readout not in {i.readout for i in inits}]
    if inits and unmatched:
        print(
            f"note: no random-init row has the own readout of {', '.join(unmatched)}: add --random-init with "
            "the pretraining config of its method to compare its own columns with its initialisation"
        )
    chance = chance_levels(data)
    print(markdown_table(rows, chance))
    if args.output:
        write_rows_json(args.output, rows, chance, settings)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
