"""`make demo` in its reduced form: every step runs, the artifacts exist and the numbers are finite."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo_output"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo" / "run_demo.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "$ python" in result.stdout and "| Mask R-CNN from SoCo init |" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] >= 50
    for key, value in summary.items():
        assert math.isfinite(value), f"{key} = {value}"
    assert summary["filtered_boxes_per_image"] > 0
    assert summary["pretrain_loss_start"] < 0 and summary["pretrain_loss_end"] < 0  # -2 cos, see README FAQ

    assert list((out / "visualizations").glob("*.png"))
    assert (out / "proposals" / "train_ratio3size0308post.json").is_file()
    assert (out / "proposals" / "train_ratio3size0308post.store").is_dir()
    for run in ("pretrain", "finetune_soco", "finetune_scratch"):
        assert (out / run / "model_final.pth").is_file(), run
        assert list((out / run).glob("events.out.tfevents.*")), f"no TensorBoard log in {run}"
    assert (out / "pretrain" / "model_final_d2.pkl").is_file()
    assert (out / "summary.md").read_text().startswith("| step | result |")
