"""`make demo`: a run starts clean and never mixes runs; one freeze protocol for every init; the summary's
probe table (chance, failed probes) and transfer table (intervals); and the reduced demo end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "demo"))  # the demo's modules live next to its scripts

from pipeline import (  # noqa: E402
    OUTPUT_MARKER,
    PROBE_KEYS,
    DemoSettings,
    build_steps,
    format_summary,
    probe_chance,
    probe_records,
    start_clean,
)


def _append_probe_rows(metrics_json: Path, value: float, iterations=(0, 6, 12)) -> None:
    """What Detectron2's JSONWriter does: append one line per probe evaluation."""
    metrics_json.parent.mkdir(parents=True, exist_ok=True)
    with open(metrics_json, "a") as f:
        for iteration in iterations:
            row = {"iteration": iteration, "probe/seconds": 1.0, **{key: value for key in PROBE_KEYS}}
            f.write(json.dumps(row) + "\n")


def test_a_second_run_summarizes_none_of_the_first_runs_rows(tmp_path):
    out = tmp_path / "demo_output"
    start_clean(out)
    _append_probe_rows(out / "pretrain" / "metrics.json", 11.0)
    (out / "benchmark_frozen" / "soco" / "seed0").mkdir(parents=True)  # the benchmark would reuse it
    start_clean(out)  # the second run
    assert not (out / "benchmark_frozen").exists() and (out / OUTPUT_MARKER).is_file()
    _append_probe_rows(out / "pretrain" / "metrics.json", 22.0)
    records = probe_records(out / "pretrain" / "metrics.json")
    assert [r["iteration"] for r in records] == [0, 6, 12]
    assert {r[key] for r in records for key in PROBE_KEYS} == {22.0}


def test_a_metrics_file_holding_two_runs_is_refused(tmp_path):
    metrics = tmp_path / "metrics.json"
    _append_probe_rows(metrics, 11.0)
    _append_probe_rows(metrics, 22.0)
    with pytest.raises(ValueError, match="holds more than one run"):
        probe_records(metrics)


def test_start_clean_never_deletes_a_folder_the_demo_did_not_write(tmp_path):
    precious = tmp_path / "thesis" / "chapter1.tex"
    precious.parent.mkdir()
    precious.write_text("keep me")
    with pytest.raises(FileExistsError, match=f"holds no {OUTPUT_MARKER}"):
        start_clean(precious.parent)
    assert precious.read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    start_clean(empty)
    assert (empty / OUTPUT_MARKER).is_file()


def test_every_init_is_benchmarked_with_the_same_frozen_parts(tmp_path):
    settings = DemoSettings(output=tmp_path)
    steps = {step.name: step.argv for step in build_steps(settings)}
    frozen = steps["benchmark_frozen"]
    assert frozen[frozen.index("--freeze") + 1] == "backbone,fpn,box_head"
    assert "--frozen" not in frozen and "--backbone-only" not in frozen
    assert [frozen[i + 1].split("=")[0] for i, a in enumerate(frozen) if a == "--weights"] == settings.inits
    settings.freeze, settings.backbone_only, settings.transfer_modes = ("backbone",), True, ("frozen", "full")
    steps = {step.name: step.argv for step in build_steps(settings)}
    assert steps["benchmark_frozen"][steps["benchmark_frozen"].index("--freeze") + 1] == "backbone"
    assert "--backbone-only" in steps["benchmark_full"] and "--freeze" not in steps["benchmark_full"]
    prepare = steps["prepare_data"]
    assert prepare[prepare.index("--stamps") + 1] == str(settings.stamp_cache)


def test_probe_chance_is_the_val_share_of_the_majority_training_class(tmp_path):
    for split, counts in (("train", {"bird": 3, "fish": 1}), ("val", {"bird": 1, "fish": 3})):
        for name, count in counts.items():
            folder = tmp_path / "probe_images" / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                (folder / f"{k}.jpg").write_bytes(b"")
    categories = [{"id": 1, "name": "bird"}, {"id": 2, "name": "fish"}]
    labels = {"train": [2, 2, 1], "val": [1, 1, 1, 2, 2]}
    (tmp_path / "labeled").mkdir()
    for split, ids in labels.items():
        annotations = [{"category_id": c, "iscrowd": 0} for c in ids]
        coco = {"images": [], "annotations": annotations, "categories": categories}
        (tmp_path / "labeled" / f"{split}.json").write_text(json.dumps(coco))
    chance = probe_chance(tmp_path)
    assert chance["probe/image_knn"] == 25.0  # train majority bird: 1 of 4 val images
    assert chance["probe/object_knn"] == chance["probe/object_linear_shared"] == 40.0  # fish: 2 of 5


def _summary(settings: DemoSettings) -> dict:
    summary = {
        "images": 57, "proposal_seconds": 7.0, "proposal_images_per_second": 8.1,
        "filtered_boxes_per_image": 29.5,
        "classes": 10, "chance_uniform": 10.0, **{f"chance_{key}": 12.5 for key in PROBE_KEYS},
        "frozen_seconds": 200.0, "frozen_frozen_parts": "backbone,fpn,box_head", "frozen_backbone_only": 0,
    }  # fmt: skip
    for init, _ in (("soco", 0), ("mocov2", 0)):
        summary |= {
            f"{init}_pretrain_seconds": 100.0, f"{init}_probe_evaluations": 5, f"{init}_probe_seconds": 1.5,
            f"{init}_pretrain_loss_start": -1.0, f"{init}_pretrain_loss_end": -6.0,
            f"{init}_probe_init_iteration": 0, f"{init}_probe_final_iteration": 200,
        }  # fmt: skip
        for stage in ("init", "final"):
            summary |= {f"{init}_{key}_{stage}": 30.0 for key in PROBE_KEYS}
    summary["soco_probe/object_linear_final"] = None  # a failed probe (NaN features)
    for init in settings.inits:
        prefix = f"frozen_{init}"
        summary |= {
            f"{prefix}_random_parts": "none" if init == "soco" else "fpn,box_head",
            f"{prefix}_trainable_parameters": 1234567, f"{prefix}_n_runs": 2,
            f"{prefix}_n_with_predictions": 2,
        }  # fmt: skip
        for key in ("bbox/AP", "segm/AP"):
            summary |= {f"{prefix}_{key}_mean": 2.0, f"{prefix}_{key}_std": 0.5}
            summary |= {f"{prefix}_{key}_ci95_low": -2.5, f"{prefix}_{key}_ci95_high": 6.5}
    summary["frozen_scratch_n_with_predictions"] = 1
    return summary


def test_summary_tables_state_chance_failures_intervals_and_the_protocol(tmp_path):
    settings = DemoSettings(output=tmp_path)
    text = format_summary(settings, _summary(settings))
    assert "| soco, random init (iteration 0) | fpn | 30.0 |" in text
    assert "| mocov2, pretrained (iteration 200) | c4 |" in text
    soco_final = next(line for line in text.splitlines() if line.startswith("| soco, pretrained"))
    assert "failed" in soco_final and "nan" not in text.lower()
    assert "| chance (majority class) |  | 12.5 |" in text and "guessing uniformly is 10 %" in text
    assert "object_knn_shared" in text
    scratch = (
        "| scratch | frozen | backbone,fpn,box_head (fpn,box_head) | 1,234,567 | 2 (1) | 2.0 ± 0.5 [-2.5,"
    )
    assert scratch in text
    assert "same parts frozen (backbone, fpn, box_head)" in text and "Whichever init comes out ahead" in text
    assert "were chosen over --freeze backbone --backbone-only" in text
    settings.freeze = ("backbone",)
    assert "were chosen over" not in format_summary(settings, _summary(settings))


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo_output"
    command = [sys.executable, str(REPO / "tools" / "demo" / "run_demo.py"), "--quick", "--output", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)  # 20 min at load 8
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "$ python" in result.stdout and "| soco, random init (iteration 0) | fpn |" in result.stdout
    assert "| scratch | frozen | backbone,fpn,box_head (backbone,fpn,box_head) |" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] >= 50
    for key, value in summary.items():
        assert isinstance(value, str) or value is None or math.isfinite(value), f"{key} = {value}"
    assert summary["filtered_boxes_per_image"] > 0
    # -2 cos, see docs/FAQ.md
    assert summary["soco_pretrain_loss_start"] < 0 and summary["soco_pretrain_loss_end"] < 0
    # probes at iteration 0 (random init) and after the last iteration, every 6 iterations in between
    assert summary["soco_probe_init_iteration"] == 0 and summary["soco_probe_evaluations"] == 3
    for key in PROBE_KEYS:
        for stage in ("init", "final"):
            value = summary[f"soco_{key}_{stage}"]
            assert value is None or 0 <= value <= 100, (key, stage, value)
    assert summary["classes"] == 10 and summary["chance_uniform"] == 10.0
    assert summary["frozen_soco_n_runs"] == summary["frozen_scratch_n_runs"] == 2

    assert list((out / "visualizations").glob("*.png"))
    assert (out / "proposals" / "train_ratio3size0308post.store").is_dir()
    assert (out / "probes.png").stat().st_size > 0
    for run in ("pretrain", "benchmark_frozen/soco/seed0", "benchmark_frozen/scratch/seed1"):
        assert (out / run / "model_final.pth").is_file(), run
        assert list((out / run).glob("events.out.tfevents.*")), f"no TensorBoard log in {run}"
    results = json.loads((out / "benchmark_frozen" / "results.json").read_text())
    assert sorted(results["summary"]) == ["scratch", "soco"] and len(results["runs"]) == 4
    assert results["freeze_parts"] == ["backbone", "fpn", "box_head"]
    assert (out / "summary.md").read_text().startswith("| step | result |")
    labeled = {s: json.loads((out / "data" / "labeled" / f"{s}.json").read_text()) for s in ("train", "val")}
    sources = {s: {a["source"] for a in d["annotations"]} for s, d in labeled.items()}
    assert sources["val"] and not sources["train"] & sources["val"]


def test_an_all_zero_transfer_table_says_it_cannot_rank(tmp_path):
    settings = DemoSettings(output=tmp_path)
    summary = _summary(settings)
    assert "cannot rank them" not in format_summary(settings, summary)
    for init in settings.inits:
        summary[f"frozen_{init}_bbox/AP_mean"] = 0.0
    assert "Every row's box AP rounds to 0.0" in format_summary(settings, summary)
