"""The command-line parser shared by the scripts in ``converters/`` (run with ``soco.utils.cli.run``)."""

from __future__ import annotations

import argparse

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

