"""Config-file checks shared by the pretraining and fine-tuning config tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from detectron2.config import CfgNode

from soco.config import leaf_keys


def _value(cfg: CfgNode, full_key: str):
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def keys_equal_to_base(path: Path, make_cfg: Callable[[], CfgNode]) -> list[str]:
    """Keys a YAML file sets to the value its ``_BASE_`` chain (or the defaults) already gives."""
    own = yaml.safe_load(path.read_text()) or {}
    base = own.pop("_BASE_", None)
    inherited = make_cfg()
    if base is not None:
        inherited.merge_from_file(str(path.parent / base))
    full = make_cfg()
    full.merge_from_file(str(path))
    keys = [key for key in leaf_keys(own) if key != "VERSION"]  # Detectron2 wants VERSION in every file
    return [key for key in keys if _value(full, key) == _value(inherited, key)]
