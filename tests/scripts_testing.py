"""The command-line scripts (``tools/``, ``converters/``, ...) as modules, so tests call their ``main``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The script ``REPO / relative_path`` (``"tools/train_net.py"``) executed as a new module named after
    its file (each call executes it again; the module is not put in ``sys.modules``)."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: not a Python script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
