"""load_checkpoint: every damaged or foreign file is a CheckpointReadError naming the file and the problem."""

import fractions
import pickle

import pytest
import torch

from soco.checkpoint.io import CheckpointReadError, load_checkpoint


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
    error = _read_error(path)
    assert "refers to Python code not importable here" in error.problem
    assert "No module named 'soco_missing_module'" in error.problem


def test_readable_files_still_load(torch_file, tmp_path):
    assert load_checkpoint(str(torch_file))["model"]["backbone.stem.conv1.weight"].shape == (64, 3, 7, 7)
    renamed = _write(tmp_path / "saved_by_torch.pkl", torch_file.read_bytes())
    assert "model" in load_checkpoint(renamed), "a torch zip file is read by torch whatever its name"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.pth"))
