"""Command-line pieces shared by the proposal scripts in ``selective_search/``."""
from __future__ import annotations

import argparse
import logging


def filter_step_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every filtering step takes: raw inputs, optional store, incomplete shards."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--input", nargs="+", required=True, help="generation output folder(s) or shard folder(s)"
    )
    parser.add_argument("--store", default=None, help="also write the compact proposal store to this folder")
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="use unfinished or missing shards' finished chunks instead of failing",
    )
    return parser


def setup_logging() -> None:
    """Timestamped INFO logging to the console, as every proposal script uses."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
