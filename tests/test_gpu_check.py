"""The one-shot GPU check's pieces that run without a GPU: the script's syntax, the wheel list and its
checker, and the summary table (the script's CPU dry run is too slow for CI: see docs/BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "tools" / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


wheels = _load("download_gpu_wheels")


def test_the_script_parses_and_the_wheel_folder_is_ignored():
    assert subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")]).returncode == 0
    assert ".whl/" in (REPO / ".gitignore").read_text().split()


def test_the_wheel_list_pins_everything_and_names_the_machine_packages():
    listed = wheels.read_wheel_list()
    assert {"sal-detectron2", "fvcore", "iopath", "pycocotools"} <= set(listed.requirements)
    assert listed.requirements["sal-detectron2"][1] == "py310" and listed.requirements["fvcore"][1] == "build"
    assert {"torch", "torchvision", "numpy"} <= listed.machine and "black" in listed.not_needed


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str], size: int = 0) -> Path:
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", metadata)
        if size:
            archive.writestr("padding", b"\0" * size, compress_type=zipfile.ZIP_STORED)
    return path


def test_the_checker_finds_missing_extra_and_unmet_wheels(tmp_path):
    listed = wheels.WheelList(
        requirements={
            "alpha": (wheels.Requirement("alpha==1.0"), "binary"),
            "beta": (wheels.Requirement("beta==2.0"), "build"),
        },
        machine={"numpy"},
        not_needed={"black"},
    )
    old_python_only = 'dataclasses; python_version < "3.7"'
    _fake_wheel(tmp_path, "alpha", "1.0", ["beta>=1", "numpy", "black", old_python_only])
    assert wheels.check(listed, tmp_path) == ["beta==2.0: no wheel in " + str(tmp_path)]
    _fake_wheel(tmp_path, "beta", "2.0", ["gamma"])
    _fake_wheel(tmp_path, "delta", "0.1", [])
    problems = wheels.check(listed, tmp_path)
    assert any("delta-0.1-py3-none-any.whl: not in gpu_wheels.txt" in p for p in problems)
    assert any("beta-2.0-py3-none-any.whl needs gamma" in p for p in problems) and len(problems) == 2


def test_the_checker_refuses_more_than_travels(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "LIMIT_BYTES", 1000)
    listed = wheels.WheelList({"alpha": (wheels.Requirement("alpha==1.0"), "binary")}, set(), set())
    _fake_wheel(tmp_path, "alpha", "1.0", [], size=2000)
    assert any("more than the 0 MiB that travel" in p for p in wheels.check(listed, tmp_path))


def test_the_summary_table_shows_rows_goals_and_failures():
    gpu_check = _load("gpu_check")
    row = {"config": "SoCo_FPN_100ep", "batch": 128, "images_per_sec": 301.5, "step_s": 0.425}
    row |= {"data_share": 0.04, "peak_mib": 61234.0, "precision": "bfloat16", "channels_last": False}
    data = {
        "started": "now",
        "steps": {
            "environment": {"ok": True, "table": {"torch": "2.11.0"}},
            "soco_fpn": {"ok": True, "rows": [row]},
            "moco_vs_densecl": {"ok": False, "error": "boom"},
        },
    }
    text = gpu_check.markdown(data, dry_run=False)
    assert "| SoCo_FPN_100ep | 128 | bfloat16 | False | 301.5 | 0.425 | 4.0% | 61234 |" in text
    assert "| torch | 2.11.0 |" in text and ">= 250 img/s" in text
    assert "Steps failed: moco_vs_densecl" in text and "dry run" not in text
