"""The data benchmarks run end to end at a small size (their numbers go to docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SCALE_KEYS = {"num_images", "list_s", "index_s", "build_s", "first_batch_s", "samples_per_s"}
SCALE_KEYS.add("worker_uss_mib_full_pass")


def test_bench_data_scale_prints_one_json_line_and_cleans_up(tmp_path):
    workdir = tmp_path / "scale"
    command = [sys.executable, str(REPO / "tools/benchmarks/bench_data_scale.py"), "--num-images", "1400"]
    command += ["--workdir", str(workdir), "--batches", "1", "--num-workers", "1", "--batch-size", "4"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert SCALE_KEYS <= result.keys() and result["num_images"] == 1400
    assert result["records_with_proposals"] == 1400, "every image of the two class folders has proposals"
    assert 0 < result["worker_uss_mib_full_pass"] < 50 and result["samples_per_s"] > 0
    assert not workdir.exists(), "without --keep the corpus is deleted"


def test_bench_views_reports_every_generator_and_the_original(tmp_path):
    command = [
        sys.executable,
        str(REPO / "tools/benchmarks/bench_views.py"),
        "--images",
        "2",
        "--rounds",
        "1",
    ]
    command += ["--samples", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "ms / sample" not in line]
    names = [row.split(" | ")[0][2:] for row in rows]
    assert names[:6] == ["SoCo FPN", "SoCo FPN, no cutout", "SoCo FPN*", "SoCo C4", "MoCo v2 / DenseCL",
                         "SwAV multi-crop"]  # fmt: skip
    assert (
        "SoCo FPN, FAST_PHOTOMETRIC (approximation)" in names
        and names[-1] == "original SoCo FPN (re-creation)"
    )
    assert rows[-1].endswith("| 1.00 |") and "JPEG decode" in done.stdout


def test_make_bench_keeps_the_sections_recorded_by_hand(tmp_path):
    sys.path.insert(0, str(REPO / "tools" / "benchmarks"))
    from run_all import KEEP_MARKER, kept_sections

    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# Benchmarks\n\n## Generated\n\nnumbers\n\n## Before / after\n\n{KEEP_MARKER}\n| a |\n")
    assert kept_sections(page) == [f"## Before / after\n\n{KEEP_MARKER}\n| a |"]
    assert kept_sections(tmp_path / "missing.md") == []


def test_make_bench_runs_every_benchmark_script_or_says_why_not():
    sys.path.insert(0, str(REPO / "tools" / "benchmarks"))
    from run_all import NOT_RUN, benchmark_commands

    scripts = {path.name for path in (REPO / "tools" / "benchmarks").glob("bench_*.py")}
    for quick in (True, False):
        run = {Path(argv[0]).name for argv in benchmark_commands(quick).values()}
        assert run | set(NOT_RUN) == scripts, (quick, scripts - run - set(NOT_RUN))
        assert not run & set(NOT_RUN)
        assert all((REPO / argv[0]).is_file() for argv in benchmark_commands(quick).values())
    quick_preemption = [argv for argv in benchmark_commands(True).values() if "bench_preemption" in argv[0]]
    assert quick_preemption[0][quick_preemption[0].index("--config") + 1] == "soco/configs/tiny/SoCo_FPN.yaml"
