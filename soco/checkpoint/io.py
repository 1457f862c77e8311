"""Reading checkpoints of any release and writing converted files atomically."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from typing import Any

import torch

from soco_proposals.fileio import atomic_write


def load_checkpoint(path: str, trust_pickle: bool = False) -> Any:
    """Load a ``.pkl`` (Detectron2 pickle of numpy arrays) or a torch file onto the CPU.

    Torch files are read with ``weights_only=True`` (tensors, containers and ``argparse.Namespace``,
    which the official SoCo checkpoints store under ``opt``). Files holding other Python objects need
    ``trust_pickle=True``; only pass it for files you trust, because unpickling can run code.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: the file holds Python objects besides tensors ({str(e).splitlines()[0]}). "
            "If you trust the file, pass --trust-pickle."
        ) from e


def save_pickle(obj: Any, path: str) -> None:
    """Pickle ``obj`` to ``path`` atomically."""
    atomic_write(path, lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL))


def save_torch(obj: Any, path: str) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def sha256_of(path: str) -> str:
    """Hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
