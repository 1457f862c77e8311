"""Shared command-line pieces of the scripts in ``converters/``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .formats import SOURCE_FORMATS


def converter_parser(description: str, output_help: str) -> argparse.ArgumentParser:
    """Parser with ``INPUT OUTPUT --format --trust-pickle --verbose``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="checkpoint to read (.pth, .pth.tar, .pkl)")
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
        help="allow arbitrary Python objects in a torch INPUT (unpickling can run code: trusted files only)",
    )
    parser.add_argument("--verbose", action="store_true", help="list every kept and dropped tensor")
    return parser


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a converter ``main``; a bad input ends with a one-line error and exit status 2."""
    try:
        return main(argv)
    except (ValueError, KeyError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
