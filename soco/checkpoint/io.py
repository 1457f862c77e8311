"""Reading checkpoints of any release and writing converted files atomically.

Reading runs no code from the file unless the caller trusts it: ``.pkl`` files go through
:class:`WeightsUnpickler` (numpy arrays, dtypes, scalars and plain containers only), torch files through
``torch.load(weights_only=True)``, ``.safetensors`` files hold nothing but tensors. ``trust_pickle=True``
(``--trust-pickle``, ``MODEL.TRUST_PICKLE``) is the only way to unpickle anything else.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from soco_proposals.fileio import atomic_write

# How a refusal tells the user to opt in, for the converters, the tools and the fine-tuning config.
TRUST_HINT = "if you trust the file, pass --trust-pickle (in a training config: MODEL.TRUST_PICKLE True)"


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


def _numpy_core_globals() -> dict[tuple[str, str], Any]:
    """``{(submodule, name): function}``: the numpy functions that array pickles call."""
    try:  # numpy 2 (numpy 1.26 also ships these names, for reading numpy 2 pickles)
        from numpy._core import multiarray, numeric
    except ImportError:
        from numpy.core import multiarray, numeric
    return {
        ("multiarray", "_reconstruct"): multiarray._reconstruct,  # ndarray, protocols 2-4
        ("multiarray", "scalar"): multiarray.scalar,  # numpy scalars
        ("numeric", "_frombuffer"): numeric._frombuffer,  # ndarray, protocol 5
    }


# The globals a pickle of numpy arrays refers to (numpy 1 writes numpy.core.*, numpy 2 numpy._core.*;
# protocol 2 encodes bytes with _codecs.encode), plus plain containers and builtin value types.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        (f"{package}.{module}", name): obj
        for package in ("numpy.core", "numpy._core")
        for (module, name), obj in _numpy_core_globals().items()
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, str, bytes, bytearray)},
    **{("builtins", t.__name__): t for t in (int, float, complex, bool)},
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle refers to a Python global outside the allowlist of :class:`WeightsUnpickler`."""

    def __init__(self, module: str, name: str):
        super().__init__(f"Unsupported global: GLOBAL {module}.{name}")
        self.qualname = f"{module}.{name}"


class WeightsUnpickler(pickle.Unpickler):
    """Unpickler of Detectron2-style ``.pkl`` weights: numpy arrays, dtypes and scalars in dicts, lists
    and tuples. Any other global (``os.system``, ``builtins.eval``, a class) raises :class:`RefusedGlobal`
    before it is looked up, so loading a crafted file runs none of its code."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles (Detectron1 / Caffe2 model zoo) name modules as Python 2 did (``__builtin__``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise RefusedGlobal(module, name)
        return allowed


def load_weights_pickle(f: IO[bytes]) -> Any:
    """Unpickle ``f`` with :class:`WeightsUnpickler` (Python 2 strings decoded as latin1, like Detectron2)."""
    return WeightsUnpickler(f, encoding="latin1").load()


def _metadata_value(text: str) -> str | bool:
    return {"True": True, "False": False}.get(text, text)


def _load_safetensors(path: str) -> dict[str, Any]:
    """``{"model": {name: tensor}, **metadata}``; ``"True"``/``"False"`` metadata become booleans."""
    with safetensors.safe_open(path, framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    if "model" in metadata:
        raise CheckpointReadError(path, "its metadata has a 'model' entry, which is the name of its tensors")
    return {"model": tensors, **{key: _metadata_value(value) for key, value in metadata.items()}}


def load_checkpoint(path: str, trust_pickle: bool = False) -> Any:
    """Load a ``.pkl`` (Detectron2 pickle of numpy arrays), ``.safetensors`` or torch file onto the CPU.

    ``.pkl`` files are read with :class:`WeightsUnpickler` (numpy arrays, dtypes, scalars, containers),
    torch files with ``weights_only=True`` (tensors, containers and ``argparse.Namespace``, which the
    official SoCo checkpoints store under ``opt``), ``.safetensors`` files as ``{"model": tensors,
    **metadata}``. Files holding other Python objects need ``trust_pickle=True``; only pass it for files
    you trust, because unpickling can run code.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointReadError`` (a ``ValueError``) for
    one that is empty, truncated, corrupt (torch zip members are CRC-checked) or not a checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointReadError(path, "the file is empty")
    if path.endswith(".safetensors"):
        try:
            return _load_safetensors(path)
        except safetensors.SafetensorError as e:
            raise CheckpointReadError(path, f"not a complete safetensors file ({_describe(e)})") from e
    is_zip = head.startswith(_ZIP_MAGIC)
    if is_zip:
        _check_torch_zip(path)
    try:
        if path.endswith(".pkl") and not is_zip:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1") if trust_pickle else load_weights_pickle(f)
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except RefusedGlobal as e:
        raise CheckpointReadError(
            path,
            f"the file holds Python objects besides numpy arrays ({e.qualname}), and unpickling them "
            f"can run code; {TRUST_HINT}",
        ) from e
    except pickle.UnpicklingError as e:
        # torch names a refused global in one of two ways (the second for modules it blocks, e.g. posix)
        refused = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(e))
        if refused:
            raise CheckpointReadError(
                path,
                f"the file holds Python objects besides tensors ({refused[1]}); {TRUST_HINT}",
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


def as_tensor(value: np.ndarray | np.generic | torch.Tensor) -> torch.Tensor:
    """A CPU tensor owning a C-ordered copy of ``value`` (0-d arrays and numpy scalars stay 0-d); a copy
    because safetensors refuses tensors that share storage."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(value, order="C"))
    return value.detach().cpu().contiguous().clone()


def as_numpy(value: np.ndarray | np.generic | torch.Tensor) -> np.ndarray:
    """``value`` as a numpy array (bfloat16 tensors as float32, numpy scalars as 0-d arrays)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return np.asarray(value)


def save_safetensors(payload: Mapping[str, Any], path: str) -> None:
    """Write ``{"model": {name: tensor or array}, key: str or bool, ...}`` as a ``.safetensors`` file
    atomically: the tensors under their names, the other entries as string metadata (read back by
    :func:`load_checkpoint`; Detectron2 itself reads only the tensors)."""
    metadata = {}
    for key, value in payload.items():
        if key != "model":
            if not isinstance(value, (str, bool)):
                raise TypeError(f"{path}: safetensors metadata {key!r} must be a str or bool, got {value!r}")
            metadata[key] = str(value)
    tensors = {name: as_tensor(value) for name, value in payload["model"].items()}
    atomic_write(path, lambda f: f.write(safetensors.torch.save(tensors, metadata=metadata)))


def save_weights(payload: Mapping[str, Any], path: str) -> None:
    """Write a ``{"model": weights, ...}`` payload in the file type its suffix names: ``.safetensors``,
    ``.pkl`` (numpy arrays), anything else a torch file (tensors), so that the safe readers
    (:func:`load_checkpoint`, :class:`~soco.checkpoint.SafeDetectionCheckpointer`) accept it."""
    if path.endswith(".safetensors"):
        save_safetensors(payload, path)
        return
    convert = as_numpy if path.endswith(".pkl") else as_tensor
    converted = {key: value for key, value in payload.items()}
    converted["model"] = {name: convert(value) for name, value in payload["model"].items()}
    (save_pickle if path.endswith(".pkl") else save_torch)(converted, path)


