"""The converter scripts on a damaged input: one line on stderr naming the file, exit 2, nothing written."""

import os
import subprocess
import sys

import pytest
import torch
from scripts_testing import load_script
from transfer_testing import REPO, image_level_checkpoint

from soco.utils.cli import run

OUTPUT_NAMES = {
    "convert_to_detectron2": "model_final_d2.pkl",
    "convert_to_torchvision": "r50_tv.pth",
    "extract_backbone_weights": "backbone.pth",
    "publish_model": "published.pth",
}


@pytest.fixture(scope="module")
def damaged_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    real = folder / "model_final.pth"
    torch.save(image_level_checkpoint(), real)
    data = real.read_bytes()
    truncated = folder / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = folder / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 8)
    return {"truncated": (truncated, "truncated or corrupt"), "garbage": (garbage, "not a torch checkpoint")}


def _assert_one_line_error(stderr: str, source, problem: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {source}: cannot read the checkpoint: {problem}"), lines[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_convert_to_detectron2_script_on_a_damaged_file(damaged_inputs, tmp_path, damage):
    source, problem = damaged_inputs[damage]
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, str(REPO / "converters" / "convert_to_detectron2.py"),
        str(source), str(out_dir / "model_final_d2.pkl"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    _assert_one_line_error(result.stderr, source, problem)
    assert "Traceback" not in result.stdout and not out_dir.exists(), "nothing written, not even the folder"


@pytest.mark.parametrize("script", sorted(OUTPUT_NAMES))
def test_every_converter_reports_a_damaged_file_the_same_way(damaged_inputs, tmp_path, capsys, script):
    module = load_script(f"converters/{script}.py")
    source, problem = damaged_inputs["truncated"]
    out_dir = tmp_path / "out"
    assert run(module.main, [str(source), str(out_dir / OUTPUT_NAMES[script])]) == 2
    captured = capsys.readouterr()
    _assert_one_line_error(captured.err, source, problem)
    assert not captured.out and not out_dir.exists()
