"""The command-line parser shared by the scripts in ``converters/`` (run with ``soco.utils.cli.run``) and the
``main`` of the two that write a backbone."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .convert import convert_file
from .formats import SOURCE_FORMATS


def converter_parser(description: str, output_help: str) -> argparse.ArgumentParser:
    """Parser with ``INPUT OUTPUT --format --trust-pickle --verbose``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="checkpoint to read (.pth, .pth.tar, .pkl, .safetensors)")
    parser.add_argument("output", help=output_help)
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", *SOURCE_FORMATS],
        help="layout of INPUT; 'auto' detects it and says which (default)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle any Python object in INPUT, not only numpy arrays (.pkl) or tensors (torch files); "
        "unpickling can run code: trusted files only",
    )
    parser.add_argument("--verbose", action="store_true", help="list every kept and dropped tensor")
    return parser


def write_backbone(
    argv: Sequence[str] | None,
    description: str,
    output_help: str,
    payload: Callable[[Mapping[str, np.ndarray]], dict[str, Any]],
    save: Callable[[dict[str, Any], str], None],
) -> int:
    """``main`` of a converter that writes the backbone of INPUT: :func:`converter_parser`, the conversion
    (``keep="backbone"``) and its report, then ``save(payload(weights), OUTPUT)``."""
    args = converter_parser(description, output_help).parse_args(argv)
    weights, report = convert_file(args.input, args.format, "backbone", args.trust_pickle)
    print(report.summary(args.verbose))
    save(payload(weights), args.output)
    print(f"wrote {args.output}")
    return 0
