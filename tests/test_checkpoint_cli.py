"""The converter scripts on a damaged input: one line on stderr naming the file, exit 2, nothing written."""

import os
import subprocess
import sys

import pytest
import torch
from transfer_testing import REPO, image_level_checkpoint

SCRIPTS = {  # script -> output file name
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


def _run_script(name: str, source, output) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(REPO / "converters" / f"{name}.py"), str(source), str(output)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "script, damage",
    [(name, "truncated") for name in SCRIPTS] + [("convert_to_detectron2", "garbage")],
)
def test_damaged_input_is_one_line_and_writes_nothing(damaged_inputs, tmp_path, script, damage):
    source, problem = damaged_inputs[damage]
    out_dir = tmp_path / "out"
    result = _run_script(script, source, out_dir / SCRIPTS[script])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {source}: cannot read the checkpoint: {problem}"), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not out_dir.exists(), "nothing is written, not even the output folder"
