"""SoCo pretraining end to end on tiny images: trainer, checkpoints, resume, CLI, full-size configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretrain_testing import assert_resume_matches, run_pretraining, write_tiny_images

from soco.data import VIEW_GENERATOR_REGISTRY
from soco.engine.pretrain import setup_pretrain_cfg
from soco.utils.metrics_file import read_metrics
from soco_proposals.image_list import list_images

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "soco" / "configs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    """Eight tiny images and a SoCo JSON with proposals for all but one (which gets the whole image)."""
    root = tmp_path_factory.mktemp("soco_corpus")
    images = write_tiny_images(root / "images", count=8)
    proposals = {}
    for index, record in enumerate(list_images(images)):
        if index == 0:
            continue
        proposals[record.key] = [[2, 3, 30, 25], [20, 10, 40, 35], [0, 0, 60, 50], [35, 30, 25, 28]]
    proposals_file = root / "train_ratio3size0308post.json"
    proposals_file.write_text(json.dumps(proposals))
    return {"PRETRAIN.DATA.IMAGE_ROOT": str(images), "PRETRAIN.DATA.PROPOSALS": str(proposals_file)}


def data_opts(corpus: dict[str, str]) -> list[str]:
    return [item for pair in corpus.items() for item in pair]


@pytest.mark.parametrize("variant", ["SoCo_FPN", "SoCo_FPN_Star", "SoCo_C4"])
def test_tiny_pretraining_logs_pair_losses_and_checkpoints(variant, corpus, tmp_path):
    opts = data_opts(corpus) + ["SOLVER.MAX_ITER", "3"]
    trainer, scalars = run_pretraining(str(CONFIGS / "tiny" / f"{variant}.yaml"), tmp_path, opts)
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "last_checkpoint").is_file()
    metrics = read_metrics(tmp_path / "metrics.json")
    pair_losses = [k for k in metrics[-1] if k.startswith("loss_")]
    # Detectron2 logs the individual losses only when there are several (C4 has one pair: total_loss only)
    assert len(pair_losses) == {"SoCo_FPN": 2, "SoCo_FPN_Star": 3, "SoCo_C4": 0}[variant]
    assert "total_loss" in metrics[-1]
    assert all(torch.isfinite(torch.tensor(v)) for v in scalars["total_loss"].values())
    assert "soco/unmatched_pair_fraction" in metrics[-1]
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu")["model"]
    head = "roi_heads.res5.0.conv1.weight" if variant == "SoCo_C4" else "roi_heads.box_head.conv1.weight"
    assert head in state and f"target.{head}" in state and "predictor.0.weight" in state


def test_tiny_fpn_resume_equals_uninterrupted_run(corpus, tmp_path):
    assert_resume_matches(str(CONFIGS / "tiny" / "SoCo_FPN.yaml"), tmp_path, data_opts(corpus), total_iters=4)


def test_cli_pretrains_the_tiny_c4_variant(corpus, tmp_path):
    command = [
        sys.executable,
        str(REPO / "tools" / "pretrain_net.py"),
        "--config-file",
        str(CONFIGS / "tiny" / "SoCo_C4.yaml"),
        *data_opts(corpus),
        "SOLVER.MAX_ITER",
        "3",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file()


FULL_SIZE_SCHEDULE = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.EPOCHS",
    "0",
    "SOLVER.WARMUP_EPOCHS",
    "0",
    "SOLVER.MAX_ITER",
    "1",
    "SOLVER.WARMUP_ITERS",
    "0",
    "DATALOADER.NUM_WORKERS",
    "0",
]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["SoCo_FPN_100ep.yaml", "SoCo_FPN_Star_400ep.yaml", "SoCo_C4_100ep.yaml"])
def test_full_size_config_runs_one_iteration_on_cpu(config, corpus, tmp_path):
    opts = data_opts(corpus) + FULL_SIZE_SCHEDULE
    _, scalars = run_pretraining(str(CONFIGS / config), tmp_path, opts)
    assert list(scalars["total_loss"]) == [0] and torch.isfinite(torch.tensor(scalars["total_loss"][0]))


@pytest.mark.parametrize(
    "config, epochs, generator, cutout",
    [
        ("SoCo_C4_100ep.yaml", 100, "SoCoC4Views", True),
        ("SoCo_C4_400ep.yaml", 400, "SoCoC4Views", True),
        ("SoCo_FPN_100ep.yaml", 100, "SoCoFPNViews", True),
        ("SoCo_FPN_400ep.yaml", 400, "SoCoFPNViews", False),
        ("SoCo_FPN_Star_400ep.yaml", 400, "SoCoFPNStarViews", False),
    ],
)
def test_full_size_configs_have_the_paper_recipe(config, epochs, generator, cutout, tmp_path):
    image_root = write_tiny_images(tmp_path / "images", count=4096 // 256)  # any corpus; checked per epoch
    cfg = setup_pretrain_cfg(
        str(CONFIGS / config), ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root), "SOLVER.IMS_PER_BATCH", "8"]
    )
    iters_per_epoch = 16 // 8
    assert cfg.SOLVER.MAX_ITER == epochs * iters_per_epoch and cfg.SOLVER.WARMUP_ITERS == 10 * iters_per_epoch
    assert cfg.SOLVER.BASE_LR == pytest.approx(1.0 * 8 / 256)  # 8.0 at the paper's batch of 2048
    assert (
        cfg.SOLVER.WEIGHT_DECAY == 1e-5
        and cfg.SOLVER.WARMUP_FACTOR == 0.01
        and cfg.SOLVER.BASE_LR_END == 1e-6
    )
    assert cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.OPTIMIZER == "LARS"
    assert cfg.MODEL.RESNETS.NORM == "SyncBN" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert not cfg.MODEL.RESNETS.STRIDE_IN_1X1
    assert cfg.PRETRAIN.DATA.VIEW_GENERATOR == generator and cfg.SOCO.CUTOUT.ENABLED == cutout
    is_c4 = generator == "SoCoC4Views"
    assert (cfg.SOCO.BOXES.JITTER_PROB == 0.0) == is_c4 and cfg.SOCO.BOXES.NUM_PER_PAIR == 4
    assert tuple(cfg.SOCO.VIEWS.CROP_SCALE) == ((0.6, 1.0) if is_c4 else (0.5, 1.0))
    expected_sizes = {"SoCoC4Views": [224, 224], "SoCoFPNViews": [224, 224, 112]}.get(
        generator, [224, 224, 192, 112]
    )
    assert list(cfg.SOCO.VIEWS.SIZES) == expected_sizes
    VIEW_GENERATOR_REGISTRY.get(generator)(cfg)


def test_launcher_builds_the_multi_node_command_from_slurm_variables(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "MASTER_ADDR": "node0"}
    launcher = str(REPO / "tools" / "SoCo_FPN_100ep.sh")
    options = ["--data", "imgs", "--proposals", "/p.json", "--gpus", "8", "--dry-run"]
    command = [launcher, *options, "SOLVER.IMS_PER_BATCH", "1024"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    expected = "--num-gpus 8 --num-machines 2 --machine-rank 1 --dist-url tcp://node0:28652 --resume"
    assert expected in " ".join(words)
    assert words[words.index("PRETRAIN.DATA.IMAGE_ROOT") + 1] == str(tmp_path / "imgs")
    assert words[-2:] == ["SOLVER.IMS_PER_BATCH", "1024"] and "soco/configs/SoCo_FPN_100ep.yaml" in words
    assert words[words.index("OUTPUT_DIR") + 1] == str(tmp_path / "output" / "soco_fpn_100ep")
    assert words[words.index("PRETRAIN.DATA.PROPOSALS") + 1] == "/p.json"
    index = words[words.index("PRETRAIN.DATA.CORPUS_INDEX") + 1]
    assert index == str(tmp_path / "output" / "soco_fpn_100ep" / "corpus_index.txt")
    own_index = subprocess.run(
        [*command, "PRETRAIN.DATA.CORPUS_INDEX", "/shared/index.txt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        own_index.stdout.split().count("PRETRAIN.DATA.CORPUS_INDEX") == 1
        and "/shared/index.txt" in own_index.stdout
    )
    image_level = subprocess.run(
        [str(REPO / "tools" / "MoCoV2_200ep.sh"), "--data", "imgs", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert image_level.returncode == 0, image_level.stderr
    assert "PRETRAIN.DATA.PROPOSALS" not in image_level.stdout and "output/mocov2_200ep" in image_level.stdout
    no_data = subprocess.run(
        [launcher, "--proposals", "/p.json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert no_data.returncode == 2 and "--data" in no_data.stderr
