"""Reading checkpoints of any release and writing converted files atomically."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import zipfile
from typing import Any

import torch

from soco_proposals.fileio import atomic_write


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, corrupt, not a checkpoint, or holding
    Python objects that may not be unpickled. The message names the file and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: cannot read the checkpoint: {problem}")
        self.path = path
        self.problem = problem


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since torch 1.6 writes a zip archive
_PICKLE_MAGIC = b"\x80"  # pickle protocol >= 2: Detectron2 .pkl files and legacy torch files


def _check_torch_zip(path: str) -> None:
    """A torch zip checkpoint must be a complete archive whose members pass their CRC check (a torch
    file damaged in the middle would otherwise load wrong tensors silently) and hold ``data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointReadError(path, f"truncated or corrupt torch file (zip archive: {e})") from e
    if damaged is not None:
        raise CheckpointReadError(path, f"corrupt torch file (zip member {damaged!r} fails its CRC check)")
    if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):
        raise CheckpointReadError(path, "a zip archive without data.pkl, not a torch checkpoint")


def _describe(error: Exception) -> str:
    """``Type: first line`` of an unpickler's error (for torch's weights-only unpickler, the line
    after its boilerplate, e.g. ``Unsupported operand 218``)."""
    text = str(error).partition("WeightsUnpickler error:")[2] or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _unreadable(path: str, head: bytes, error: Exception) -> CheckpointReadError:
    """The error for a file the unpickler gave up on, worded by what the file looks like."""
    if isinstance(error, (ImportError, AttributeError)):
        return CheckpointReadError(path, f"it refers to Python code not importable here ({_describe(error)})")
    if head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return CheckpointReadError(path, f"the file is truncated or corrupt ({_describe(error)})")
    return CheckpointReadError(
        path, f"not a torch checkpoint or a pickle (starts with {head[:8]!r}; {_describe(error)})"
    )


def load_checkpoint(path: str, trust_pickle: bool = False) -> Any:
    """Load a ``.pkl`` (Detectron2 pickle of numpy arrays) or a torch file onto the CPU.

    Torch files are read with ``weights_only=True`` (tensors, containers and ``argparse.Namespace``,
    which the official SoCo checkpoints store under ``opt``). Files holding other Python objects need
    ``trust_pickle=True``; only pass it for files you trust, because unpickling can run code.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointReadError`` (a ``ValueError``) for
    one that is empty, truncated, corrupt (torch zip members are CRC-checked) or not a checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointReadError(path, "the file is empty")
    is_zip = head.startswith(_ZIP_MAGIC)
    if is_zip:
        _check_torch_zip(path)
    try:
        if path.endswith(".pkl") and not is_zip:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused:
            raise CheckpointReadError(
                path,
                f"the file holds Python objects besides tensors ({refused[1]}); "
                "if you trust the file, pass --trust-pickle (trust_pickle=True)",
            ) from e
        raise _unreadable(path, head, e) from e
    except Exception as e:  # a damaged file makes the unpicklers fail in many ways (EOF, KeyError, ...)
        raise _unreadable(path, head, e) from e


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
