"""Helpers shared by the tests of the image-level baselines (MoCo v2, DenseCL, SwAV)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from pretrain_testing import assert_resume_matches, run_pretraining, write_tiny_images
from torch import nn

import soco.data.image_views  # noqa: F401  (registers the view generators)
import soco.modeling.densecl  # noqa: F401  (registers the meta-architectures)
import soco.modeling.moco  # noqa: F401
import soco.modeling.swav  # noqa: F401
from soco.config import add_soco_config
from soco.engine.trainer import PretrainTrainer
from soco.utils.metrics_file import read_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "soco" / "configs"


def build_tiny_model(config_file: Path, *overrides: str) -> nn.Module:
    """The model of ``config_file`` (plus ``KEY VALUE`` overrides), seeded, in training mode on the CPU."""
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list(list(overrides))
    torch.manual_seed(0)
    return build_model(cfg).train()


def two_views(batch: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch for MoCo/DenseCL: ``{"views": (batch, 2, 3, size, size)}`` of Gaussian noise."""
    return {"views": torch.randn(batch, 2, 3, size, size, generator=torch.Generator().manual_seed(seed))}


def assert_tiny_config_trains_and_resumes(config_file: Path, tmp_path: Path) -> None:
    """6 iterations of a tiny config through the trainer: finite losses and a final checkpoint, and a run
    killed after 3 iterations then resumed ends exactly where the uninterrupted run does."""
    images = write_tiny_images(tmp_path / "images", count=6)
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(images)]
    assert_resume_matches(str(config_file), tmp_path, opts, total_iters=6)
    metrics = read_metrics(tmp_path / "straight" / "metrics.json")
    losses = [record["total_loss"] for record in metrics if "total_loss" in record]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert (tmp_path / "straight" / "model_final.pth").is_file()


def run_full_size_config_for_one_iteration(config_file: Path, tmp_path: Path) -> PretrainTrainer:
    """One iteration of a published-recipe config (ResNet-50, full-size views and queues) at batch 2 on the
    CPU, with its epoch-based schedule resolved on 6 tiny images (3 iterations per epoch)."""
    images = write_tiny_images(tmp_path / "images", count=6)
    overrides = ["PRETRAIN.DATA.IMAGE_ROOT", str(images), "SOLVER.IMS_PER_BATCH", "2"]
    overrides += ["DATALOADER.NUM_WORKERS", "0"]
    trainer, scalars = run_pretraining(str(config_file), tmp_path / "output", overrides, stop_after_iter=1)
    assert list(scalars["total_loss"]) == [0] and math.isfinite(scalars["total_loss"][0])
    assert trainer.cfg.SOLVER.ITERS_PER_EPOCH == 3
    return trainer


def run_command_line(config_file: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """Run ``tools/pretrain_net.py --config-file CONFIG PRETRAIN.DATA.IMAGE_ROOT DIR OUTPUT_DIR OUT`` for two
    iterations in a subprocess; returns the state dict of ``OUT/model_final.pth``."""
    images = write_tiny_images(tmp_path / "images", count=6)
    output = tmp_path / "output"
    command = [sys.executable, str(CONFIGS.parents[1] / "tools" / "pretrain_net.py")]
    command += [
        "--config-file",
        str(config_file),
        "PRETRAIN.DATA.IMAGE_ROOT",
        str(images),
        "OUTPUT_DIR",
        str(output),
    ]
    command += ["SOLVER.MAX_ITER", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(output / "model_final.pth", map_location="cpu")["model"]
