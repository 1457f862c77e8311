"""Convert a pretraining checkpoint into a Detectron2 ``.pkl`` for fine-tuning.

Reads soco's own checkpoints and the official MoCo, SwAV, DenseCL / OpenSelfSup, SoCo and torchvision
releases. Writes ``{"model": numpy arrays, "__author__": "soco", "matching_heuristics": True}``
under Detectron2 suffix names (``stem.*``, ``res2..5.*``, ``fpn_lateral*``, ``fpn_output*``,
``box_head.*``) that ``DetectionCheckpointer`` places in FPN and C4 models alike.

  python converters/convert_to_detectron2.py output/soco_fpn_100ep/model_final.pth \\
      output/soco_fpn_100ep/model_final_d2.pkl \\
      --verify-config detectron2_configs/coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from soco.checkpoint import KEEP_CHOICES, convert_file, detectron2_payload, save_weights
from soco.checkpoint.cli import converter_parser
from soco.detection import check_transfer_with_config
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = converter_parser(
        __doc__,
        "Detectron2 weights to write: .pkl, or .safetensors (soco's train_net reads matching_heuristics "
        "from its metadata; plain Detectron2 needs 'FILE.safetensors?matching_heuristics=True')",
    )
    parser.add_argument(
        "--keep", default="all", choices=KEEP_CHOICES, help="'all': backbone + FPN + box head when present"
    )
    parser.add_argument(
        "--verify-config",
        metavar="YAML",
        help="before writing, check the weights fill this fine-tuning model",
    )
    parser.add_argument(
        "--verify-opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides for --verify-config",
    )
    args = parser.parse_args(argv)
    if not args.output.endswith((".pkl", ".safetensors")):
        parser.error(
            "OUTPUT must end with .pkl or .safetensors (the files Detectron2 reads converted weights from), "
            f"got {args.output!r}"
        )

    weights, report = convert_file(args.input, args.format, args.keep, args.trust_pickle)
    print(report.summary(args.verbose))
    if args.verify_config:
        check = check_transfer_with_config(weights, args.verify_config, args.verify_opts)
        print(f"verified against {args.verify_config}:\n{check.summary()}")
        if not check.ok:
            print("error: the weights do not fill the fine-tuning model; nothing written", file=sys.stderr)
            return 1
    save_weights(detectron2_payload(weights), args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
