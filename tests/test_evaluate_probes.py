"""tools/evaluate_probes.py and tools/plot_probes.py on tiny checkpoints, probe sets and metrics files."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from probes_testing import register_probe_box_sets, write_probe_image_folder
from scripts_testing import load_script
from transfer_testing import image_level_checkpoint, moco_release, soco_fpn_checkpoint

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle
from soco.evaluation import PROBE_KEYS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe_args(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_probes")
    train, test = register_probe_box_sets(root, "cli_boxes")
    folder = write_probe_image_folder(root / "folder")
    return ["--image-root", str(folder), "--box-train", train, "--box-test", test, "--image-size", "32",
            "--min-size-test", "64", "--max-size-test", "128", "--linear-steps", "20"]  # fmt: skip


TINY = REPO / "soco" / "configs" / "tiny"


def test_rows_for_each_weights_and_a_random_init_row_per_method(tmp_path, probe_args, capsys):
    torch.save(soco_fpn_checkpoint(randomize=False), tmp_path / "soco.pth")
    # (image_level_checkpoint's U(0.5, 1.5) weights overflow to inf: that row would read "failed")
    torch.save(moco_release(torchvision.models.resnet18(weights=None).state_dict()), tmp_path / "moco.pth")
    output = tmp_path / "rows.json"
    argv = ["--weights", f"soco={tmp_path / 'soco.pth'}", "--weights", f"moco={tmp_path / 'moco.pth'}"]
    argv += ["--random-init", str(TINY / "SoCo_FPN.yaml"), "--random-init", str(TINY / "MoCoV2.yaml")]
    assert load_script("tools/evaluate_probes.py").main([*argv, *probe_args, "--output", str(output)]) == 0
    table = capsys.readouterr().out
    columns = " | ".join(key.removeprefix("probe/") for key in PROBE_KEYS)
    assert f"| weights | readout | {columns} | seconds |" in table
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[:2] for line in lines[1:]] == [
        ["| random init (SoCo_FPN)", "fpn"],
        ["| random init (MoCoV2)", "c4"],
        ["| soco", "fpn"],
        ["| moco", "c4"],
        ["| chance (majority class)", ""],
    ]
    assert "- object_knn_shared: object level, shared readout" in table
    assert "- readout c4: own object readout = res4 RoIAlign" in table
    saved = json.loads(output.read_text())
    assert [row["name"] for row in saved["rows"]] == [
        "random init (SoCo_FPN)", "random init (MoCoV2)", "soco", "moco"
    ]  # fmt: skip
    assert saved["rows"][1]["source"] == f"{TINY / 'MoCoV2.yaml'} (SEED 0)"
    for row in saved["rows"]:
        assert set(row["results"]) == {*PROBE_KEYS, "probe/seconds"}
        assert all(0 <= row["results"][key] <= 100 for key in PROBE_KEYS)
    # C4 weights: the own readout is the shared one
    moco = saved["rows"][3]["results"]
    assert moco["probe/object_knn"] == moco["probe/object_knn_shared"]
    assert saved["chance"]["probe/image_knn"] == 50.0  # 2 balanced classes
    assert saved["chance"]["probe/object_linear_shared"] == saved["chance"]["probe/object_knn"]
    assert saved["settings"]["image_size"] == 32 and saved["settings"]["knn_k"] == 20
    assert saved["settings"]["knn_normalization"] == "centered"


def test_diverged_weights_read_failed_in_the_table_and_nan_in_the_json(tmp_path, probe_args, capsys):
    weights, _ = convert_checkpoint(image_level_checkpoint())
    diverged = {k: v * np.float32("nan") if v.dtype.kind == "f" else v for k, v in weights.items()}
    save_pickle(detectron2_payload(diverged), str(tmp_path / "diverged.pkl"))
    output = tmp_path / "rows.json"
    argv = ["--weights", f"diverged={tmp_path / 'diverged.pkl'}", *probe_args, "--output", str(output)]
    assert load_script("tools/evaluate_probes.py").main(argv) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| diverged")]
    assert row.split(" | ")[2:-1] == ["failed"] * len(PROBE_KEYS)
    results = json.loads(output.read_text())["rows"][0]["results"]  # NaN in, NaN out: never a number
    assert all(math.isnan(results[key]) for key in PROBE_KEYS)


def test_converted_pkl_and_official_release_are_read(tmp_path, probe_args, capsys):
    weights, _ = convert_checkpoint(soco_fpn_checkpoint(randomize=False))
    save_pickle(detectron2_payload(weights), str(tmp_path / "soco_d2.pkl"))
    resnet18 = torchvision.models.resnet18(weights=None).state_dict()  # official MoCo layout around it
    torch.save(moco_release(resnet18), tmp_path / "moco.pth.tar")
    argv = ["--weights", f"pkl={tmp_path / 'soco_d2.pkl'}", "--weights", f"moco={tmp_path / 'moco.pth.tar'}"]
    assert load_script("tools/evaluate_probes.py").main([*argv, *probe_args]) == 0
    table = capsys.readouterr().out
    assert "| pkl | " in table and "| moco | " in table and "nan" not in table


def test_random_init_takes_a_config_and_the_old_flag_names_the_new_form(tmp_path, probe_args, capsys):
    tool = load_script("tools/evaluate_probes.py")
    torch.save(soco_fpn_checkpoint(randomize=False), tmp_path / "soco.pth")
    argv = ["--random-init", str(TINY / "MoCoV2.yaml"), "--weights", f"soco={tmp_path / 'soco.pth'}"]
    assert tool.main([*argv, *probe_args]) == 0
    out = capsys.readouterr().out
    assert "| random init (MoCoV2) | c4 |" in out
    assert "note: no random-init row has the own readout of soco (fpn): add --random-init" in out
    old = ["--random-init", "--config-file", str(TINY / "MoCoV2.yaml"), *probe_args]
    with pytest.raises(SystemExit):
        tool.main(old)
    assert "--random-init takes a pretraining config now (--random-init CONFIG" in capsys.readouterr().err


def test_a_test_set_that_is_the_training_set_is_refused(probe_args, capsys):
    tool = load_script("tools/evaluate_probes.py")
    args = list(probe_args)
    args[args.index("--box-test") + 1] = args[args.index("--box-train") + 1]
    argv = ["--random-init", str(TINY / "MoCoV2.yaml"), *args]
    assert tool.run(tool.main, argv) == 2
    assert "train and test are the same dataset 'cli_boxes_train'" in capsys.readouterr().err


def test_a_missing_or_unreadable_weights_file_stops_before_any_work(tmp_path, probe_args, capsys):
    torch.save(soco_fpn_checkpoint(randomize=False), tmp_path / "soco.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    tool = load_script("tools/evaluate_probes.py")
    for bad in ("missing.pth", "broken.pth"):
        argv = [
            "--weights",
            f"soco={tmp_path / 'soco.pth'}",
            "--weights",
            f"bad={tmp_path / bad}",
            *probe_args,
        ]
        assert tool.run(tool.main, argv) == 2
        out = capsys.readouterr()
        assert str(tmp_path / bad) in out.err and "probe data" not in out.out


def test_plot_probes_writes_a_png_and_rejects_a_file_without_probes(tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    probes = ("probe/object_knn", "probe/object_linear", "probe/image_knn")
    rows = [
        {"iteration": 0, **dict(zip(probes, (40.0, 45.0, 50.0), strict=True))},
        {"iteration": 3, "total_loss": 1.0},
        {"iteration": 5, **dict(zip(probes, (60.0, 55.0, 75.0), strict=True))},
    ]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tool = load_script("tools/plot_probes.py")
    assert tool.main([str(metrics), str(tmp_path / "probes.png")]) == 0
    assert (tmp_path / "probes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "probe/object_knn: 2 points" in capsys.readouterr().out
    metrics.write_text(json.dumps({"iteration": 3, "total_loss": 1.0}) + "\n")
    assert tool.run(tool.main, [str(metrics), str(tmp_path / "none.png")]) == 2
    assert "no probe/ entries" in capsys.readouterr().err and not (tmp_path / "none.png").exists()
