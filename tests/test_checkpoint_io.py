"""load_checkpoint: every damaged or foreign file is a CheckpointReadError naming the file and the problem."""

import collections
import fractions
import io
import os
import pickle

import numpy as np
import pytest
import torch

from soco.checkpoint.io import (
    CheckpointReadError,
    RefusedGlobal,
    load_checkpoint,
    load_weights_pickle,
    save_safetensors,
    save_weights,
)


@pytest.fixture
def torch_file(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"backbone.stem.conv1.weight": torch.randn(64, 3, 7, 7)}}, path)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def _read_error(path: str, **kwargs) -> CheckpointReadError:
    with pytest.raises(CheckpointReadError) as info:
        load_checkpoint(path, **kwargs)
    assert str(info.value).startswith(f"{path}: cannot read the checkpoint: ")
    assert info.value.path == path and "\n" not in str(info.value)
    return info.value


def test_truncated_torch_file(torch_file, tmp_path):
    data = torch_file.read_bytes()
    error = _read_error(_write(tmp_path / "half.pth", data[: len(data) // 2]))
    assert error.problem.startswith("truncated or corrupt torch file (zip archive: ")


def test_torch_file_damaged_in_the_middle_fails_its_crc_check(torch_file, tmp_path):
    data = bytearray(torch_file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # inside the tensor's bytes: torch.load alone would not notice
    path = _write(tmp_path / "damaged.pth", bytes(data))
    assert "fails its CRC check" in _read_error(path).problem


@pytest.mark.parametrize("protocol", ["legacy torch", "pickle"])
def test_truncated_pickle_based_files(tmp_path, protocol):
    path = tmp_path / ("old.pth" if protocol == "legacy torch" else "model_final.pkl")
    if protocol == "legacy torch":
        torch.save({"a": torch.randn(100)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": list(range(100))}}))
    data = path.read_bytes()
    error = _read_error(_write(path, data[: len(data) // 2]))
    assert error.problem.startswith("the file is truncated or corrupt (")


@pytest.mark.parametrize("name", ["garbage.pth", "garbage.pkl"])
def test_garbage_and_empty_files(tmp_path, name):
    error = _read_error(_write(tmp_path / name, b"this is not a checkpoint\n" * 10))
    assert error.problem.startswith("not a torch checkpoint or a pickle (starts with b'this is ")
    assert _read_error(_write(tmp_path / name, b"")).problem == "the file is empty"


def test_python_objects_need_trust_pickle(tmp_path):
    path = tmp_path / "with_objects.pth"
    torch.save({"model": {}, "ratio": fractions.Fraction(1, 3)}, path)
    error = _read_error(str(path))
    assert "holds Python objects besides tensors (fractions.Fraction)" in error.problem
    assert "--trust-pickle" in error.problem
    assert load_checkpoint(str(path), trust_pickle=True)["ratio"] == fractions.Fraction(1, 3)


def test_code_that_cannot_be_imported_is_named(tmp_path):
    # GLOBAL soco_missing_module.Thing, then an empty NEWOBJ: a pickle of a class this machine lacks
    path = _write(tmp_path / "foreign.pkl", b"\x80\x02csoco_missing_module\nThing\n)\x81.")
    refused = _read_error(path).problem
    assert "Python objects besides numpy arrays (soco_missing_module.Thing)" in refused
    error = _read_error(path, trust_pickle=True)
    assert "refers to Python code not importable here" in error.problem
    assert "No module named 'soco_missing_module'" in error.problem


def test_readable_files_still_load(torch_file, tmp_path):
    assert load_checkpoint(str(torch_file))["model"]["backbone.stem.conv1.weight"].shape == (64, 3, 7, 7)
    renamed = _write(tmp_path / "saved_by_torch.pkl", torch_file.read_bytes())
    assert "model" in load_checkpoint(renamed), "a torch zip file is read by torch whatever its name"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.pth"))


class _OpensAFile:
    """Unpickling this creates ``path``: the shape of a crafted "pretrained model"."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsAShellCommand(_OpensAFile):
    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_OpensAFile, _RunsAShellCommand])
def test_crafted_pickle_runs_no_code(tmp_path, payload):
    created = tmp_path / "created_by_unpickling"
    data = pickle.dumps({"model": {"stem.conv1.weight": np.zeros(3)}, "x": payload(created)}, protocol=2)
    pickle.loads(data)  # the payload is live: plain pickle runs it
    assert created.exists()
    created.unlink()

    for name in ("model_final.pkl", "model_final.pth"):
        path = _write(tmp_path / name, data)
        error = _read_error(path)
        assert "Python objects besides" in error.problem and "--trust-pickle" in error.problem
        assert "MODEL.TRUST_PICKLE" in error.problem
    torch_file = tmp_path / "crafted_torch.pth"
    torch.save({"model": {}, "x": payload(created)}, torch_file)
    assert "Python objects besides tensors" in _read_error(str(torch_file)).problem
    assert not created.exists()


def _numpy_weights() -> dict:
    return {
        "model": collections.OrderedDict(
            [("res2.0.conv1.weight", np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)),
             ("res2.0.conv1.norm.num_batches_tracked", np.int64(7))]
        ),
        "__author__": "soco",
        "matching_heuristics": True,
    }  # fmt: skip


def _assert_numpy_weights(loaded: dict) -> None:
    expected = _numpy_weights()
    assert loaded.keys() == expected.keys() and loaded["__author__"] == "soco"
    for name, value in expected["model"].items():
        np.testing.assert_array_equal(loaded["model"][name], value)
        assert loaded["model"][name].dtype == value.dtype


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_1_pickles_load(tmp_path, protocol):
    data = pickle.dumps(_numpy_weights(), protocol=protocol)
    assert b"numpy.core.multiarray" in data or b"numpy.core.numeric" in data
    _assert_numpy_weights(load_checkpoint(_write(tmp_path / "w.pkl", data)))


def test_numpy_2_pickles_load(tmp_path):
    # numpy 2 writes numpy._core.*; protocol 2 names globals in plain text, so the bytes can be renamed
    data = pickle.dumps(_numpy_weights(), protocol=2)
    renamed = data.replace(b"cnumpy.core.multiarray\n", b"cnumpy._core.multiarray\n")
    assert renamed.count(b"numpy._core.multiarray\n_reconstruct") == 1
    assert renamed.count(b"numpy._core.multiarray\nscalar") == 1 and b"numpy.core" not in renamed
    _assert_numpy_weights(load_checkpoint(_write(tmp_path / "w.pkl", renamed)))


def test_python_2_pickles_load():
    # what Python 2 wrote for {"blobs": {"conv1_w": set([1, 2])}}: __builtin__ is Python 3's builtins
    data = b"(dp0\nS'blobs'\np1\n(dp2\nS'conv1_w'\np3\nc__builtin__\nset\n((lp4\nI1\naI2\natRssS'x'\nI0\ns."
    assert load_weights_pickle(io.BytesIO(data)) == {"blobs": {"conv1_w": {1, 2}}, "x": 0}
    with pytest.raises(RefusedGlobal, match=r"GLOBAL posix\.system"):
        load_weights_pickle(io.BytesIO(b"cposix\nsystem\n(S'true'\ntR."))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pkl"])
def test_save_weights_round_trip(tmp_path, suffix):
    path = str(tmp_path / f"weights{suffix}")
    payload = _numpy_weights()
    payload["model"]["res2.0.conv1.weight"] = torch.from_numpy(payload["model"]["res2.0.conv1.weight"])
    save_weights(payload, path)
    loaded = load_checkpoint(path)
    assert loaded["matching_heuristics"] is True and loaded["__author__"] == "soco"
    as_numpy = {k: np.asarray(v) for k, v in loaded["model"].items()}
    _assert_numpy_weights({**loaded, "model": as_numpy})
    array_type = np.ndarray if suffix == ".pkl" else torch.Tensor
    assert all(isinstance(v, array_type) for v in loaded["model"].values())


def test_safetensors_errors_name_the_file(tmp_path):
    with pytest.raises(TypeError, match="metadata 'iteration' must be a str or bool"):
        save_safetensors({"model": {}, "iteration": 3}, str(tmp_path / "x.safetensors"))
    path = _write(tmp_path / "cut.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert _read_error(path).problem.startswith("not a complete safetensors file (")
