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
    assert "$ python" in result.stdout and "| soco | frozen |" in result.stdout
    assert "| soco random init | 0 |" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] >= 50
    for key, value in summary.items():
        assert math.isfinite(value), f"{key} = {value}"
    assert summary["filtered_boxes_per_image"] > 0
    # -2 cos, see the README FAQ
    assert summary["soco_pretrain_loss_start"] < 0 and summary["soco_pretrain_loss_end"] < 0
    # probes at iteration 0 (random init) and after the last iteration, every 6 iterations in between
    assert summary["soco_probe_init_iteration"] == 0 and summary["soco_probe_evaluations"] == 3
    for key in ("probe/object_knn", "probe/object_linear", "probe/image_knn"):
        assert 0 <= summary[f"soco_{key}_init"] <= 100 and 0 <= summary[f"soco_{key}_final"] <= 100
    assert summary["chance_image"] == summary["chance_object"] == 100 / 3

    assert list((out / "visualizations").glob("*.png"))
    assert (out / "proposals" / "train_ratio3size0308post.json").is_file()
    assert (out / "proposals" / "train_ratio3size0308post.store").is_dir()
    assert (out / "probes.png").stat().st_size > 0
    benchmark = out / "benchmark_frozen"
    for run in ("pretrain", "benchmark_frozen/soco/seed0", "benchmark_frozen/scratch/seed1"):
        assert (out / run / "model_final.pth").is_file(), run
        assert list((out / run).glob("events.out.tfevents.*")), f"no TensorBoard log in {run}"
    assert (out / "pretrain" / "model_final_d2.pkl").is_file()
    results = json.loads((benchmark / "results.json").read_text())
    assert sorted(results["summary"]) == ["scratch", "soco"] and len(results["runs"]) == 4
    assert (benchmark / "results.png").stat().st_size > 0 and (benchmark / "results.md").is_file()
    assert (out / "summary.md").read_text().startswith("| step | result |")
