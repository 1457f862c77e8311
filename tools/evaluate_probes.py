#!/usr/bin/env python
"""The pretraining probes offline: image-level kNN, object-level kNN and linear probe, a row per weights.

  python tools/evaluate_probes.py --weights soco=output/soco_fpn/model_final.pth \\
      --weights moco=moco_v2_200ep_pretrain.pth.tar --random-init \\
      --image-root imagenet_val_subset/ \\
      --register-coco boxes_train train.json images/ --register-coco boxes_val val.json images/ \\
      --box-train boxes_train --box-test boxes_val --output probes.json

Weights: our pretraining .pth, a converted Detectron2 .pkl, or any official release the converters read
(MoCo, SwAV, DenseCL, SoCo, torchvision). Boxes are pooled as the detector will pool them (FPN weights with
a box head: canonical FPN level + box head; the others: res4 RoIAlign + res5). --random-init adds a baseline
row: the architecture of the first --weights (or of --config-file's model), Detectron2's initialisation.
Probe settings default to PRETRAIN.PROBES.* of --config-file (or of soco's defaults).
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
    ProbeData,
    ProbeSettings,
    chance_levels,
    config_weights,
    markdown_table,
    probe_rows,
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
    add("--random-init", action="store_true", help="add a random-init baseline row")
    add("--config-file", default="", help="pretraining config: the probe defaults and the random-init model")
    add("--image-root", default="", help="image folder with train/<class>/* and val/<class>/*")
    add("--box-train", default="", help="registered dataset of labelled boxes to fit the probes on")
    add("--box-test", default="", help="registered dataset of labelled boxes to score them on")
    add_register_coco_argument(parser, use="--box-train / --box-test")
    add("--device", default="cpu", help="device of the frozen encoder (cpu, cuda)")
    add("--trust-pickle", action="store_true", help="allow Python objects in torch files (trusted only)")
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
    if not args.weights and not (args.random_init and args.config_file):
        parser.error("nothing to probe: give --weights NAME=PATH (and/or --random-init with --config-file)")
    if not args.image_root and not args.box_train:
        parser.error("no probe data: give --image-root and/or --box-train NAME --box-test NAME")
    if bool(args.box_train) != bool(args.box_test):
        parser.error("--box-train and --box-test go together")
    names = [name for name, _ in args.weights]
    if len(set(names)) != len(names):
        parser.error(f"--weights names must differ, got {names}")
    # every file is read (and converted) before any work, so a bad one stops the run at once
    named = [(name, path, read_weights(path, args.trust_pickle)[0]) for name, path in args.weights]
    cfg = load_pretrain_cfg(args.config_file, ["MODEL.DEVICE", "cpu"]) if args.config_file else _default_cfg()
    flags = ProbeSettings.config_fields()
    overrides = {flag: value for flag in flags if (value := getattr(args, flag)) is not None}
    settings = replace(ProbeSettings.from_config(cfg), **overrides)
    register_coco_format_datasets(args.register_coco)
    data = ProbeData.load(settings, args.image_root, args.box_train, args.box_test)
    print(f"probe data: {data.describe()}", flush=True)
    random_init, source = None, ""
    if args.random_init:
        if named:
            random_init, source = named[0][2], f"architecture of {named[0][1]}"
        else:
            random_init, source = config_weights(cfg), f"architecture of {args.config_file}"
    stride_in_1x1 = bool(args.config_file) and cfg.MODEL.RESNETS.STRIDE_IN_1X1
    rows = probe_rows(named, data, settings, random_init, source, args.device, stride_in_1x1)
    chance = chance_levels(data)
    print(markdown_table(rows, chance))
    if args.output:
        write_rows_json(args.output, rows, chance, settings)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
