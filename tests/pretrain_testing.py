"""Helpers for tests that run the pretraining engine end to end (tiny configs, CPU)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng
from PIL import Image

from soco.engine.pretrain import setup_pretrain_cfg
from soco.engine.trainer import PretrainTrainer
from soco_proposals.image_list import list_images


class _Interrupted(Exception):
    """Raised by :class:`_StopAfter` to simulate a run killed after a checkpoint."""


class _StopAfter(HookBase):
    def __init__(self, num_iters: int):
        self.num_iters = num_iters

    def after_step(self) -> None:
        if self.trainer.iter + 1 >= self.num_iters:
            raise _Interrupted


class _RecordScalars(HookBase):
    """Keep the raw (unsmoothed) per-iteration values of a few scalars."""

    def __init__(self, names: tuple[str, ...] = ("total_loss", "tau", "lr")):
        self.names = names
        self.values: dict[str, dict[int, float]] = {n: {} for n in names}

    def after_step(self) -> None:
        histories = self.trainer.storage.histories()
        for name in self.names:
            if name in histories:
                self.values[name][self.trainer.iter] = float(histories[name].latest())


class _Float64Batches:
    """A data loader whose floating-point tensors are cast to float64 (its other attributes: the loader's)."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def __iter__(self):
        for batch in self.loader:
            yield {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


class Float64Trainer(PretrainTrainer):
    """The pretraining trainer with the model and the batches in float64: runs that differ only in the
    order of their sums (1 vs 2 processes) then agree to ~1e-12 instead of fp32's rounding amplified by
    the batch norms' cancellations (up to ~1e-3 in some gradients of the tiny SoCo FPN)."""

    @classmethod
    def build_model(cls, cfg):
        return super().build_model(cfg).double()

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        return _Float64Batches(super().build_train_loader(cfg, start_iter=start_iter))


def write_tiny_images(folder: Path, count: int = 6, size: tuple[int, int] = (80, 64), seed: int = 0) -> Path:
    """Write ``count`` small JPEG images with coloured rectangles into ``folder`` (an image root)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w, h = size[0] + 8 * (i % 3), size[1] + 8 * (i % 2)
        pixels = np.full((h, w, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        for _ in range(3):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            pixels[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 255, 3)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.jpg", quality=95)
    return folder


def write_tiny_corpus(root: Path, count: int = 8) -> list[str]:
    """Tiny images under ``root/images`` and a SoCo JSON giving each the same four boxes; returns the
    ``PRETRAIN.DATA.IMAGE_ROOT ... PRETRAIN.DATA.PROPOSALS ...`` overrides (the first two for image-level
    methods)."""
    images = write_tiny_images(root / "images", count=count)
    boxes = [[2, 3, 30, 25], [20, 10, 40, 35], [0, 0, 60, 50], [35, 30, 25, 28]]
    proposals = root / "proposals.json"
    proposals.write_text(json.dumps({record.key: boxes for record in list_images(images)}))
    return ["PRETRAIN.DATA.IMAGE_ROOT", str(images), "PRETRAIN.DATA.PROPOSALS", str(proposals)]


def assert_same_final_weights(
    expected_dir: Path, actual_dir: Path, rtol: float = 0.0, atol: float = 0.0
) -> None:
    """``actual_dir/model_final.pth`` holds the weights of ``expected_dir/model_final.pth``: the same keys,
    and each tensor within ``rtol`` / ``atol`` (default: bit for bit)."""
    expected = torch.load(expected_dir / "model_final.pth", map_location="cpu")["model"]
    actual = torch.load(actual_dir / "model_final.pth", map_location="cpu")["model"]
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        message = f"weight {key} of {actual_dir} differs from {expected_dir}"
        torch.testing.assert_close(actual[key], value, rtol=rtol, atol=atol, msg=message)


def run_pretraining(
    config_file: str,
    output_dir: Path,
    overrides: list[str],
    resume: bool = False,
    stop_after_iter: int | None = None,
    float64: bool = False,
    hooks: Sequence[HookBase] = (),
) -> tuple[PretrainTrainer, dict[str, dict[int, float]]]:
    """Run ``tools/pretrain_net.py``'s main in-process; optionally kill it after ``stop_after_iter`` steps
    (``float64``: with :class:`Float64Trainer`; ``hooks``: registered before the recorder).

    Returns the trainer and the raw per-iteration ``total_loss``, ``tau`` and ``lr`` values of this run.
    """
    opts = list(overrides) + ["OUTPUT_DIR", str(output_dir), "MODEL.DEVICE", "cpu"]
    cfg = setup_pretrain_cfg(config_file, opts)
    seed_all_rng(cfg.SEED)  # as default_setup does in tools/pretrain_net.py
    trainer = (Float64Trainer if float64 else PretrainTrainer)(cfg)
    recorder = _RecordScalars()
    extra = [*hooks, recorder] + ([_StopAfter(stop_after_iter)] if stop_after_iter is not None else [])
    trainer.register_hooks(extra)
    trainer.resume_or_load(resume=resume)
    with contextlib.suppress(_Interrupted):
        trainer.train()
    return trainer, recorder.values


def pretrain_args(config_file: str, opts: list[str], resume: bool = False) -> argparse.Namespace:
    """The argument namespace ``soco.engine.pretrain.run_pretraining`` expects, for a single CPU process."""
    return argparse.Namespace(
        config_file=config_file,
        opts=opts,
        resume=resume,
        num_gpus=1,
        num_machines=1,
        machine_rank=0,
        dist_url="auto",
        eval_only=False,
    )


def assert_resume_matches(config_file: str, tmp_path: Path, overrides: list[str], total_iters: int) -> None:
    """Run ``total_iters`` straight, then half + kill + resume; losses, tau, lr and weights must agree."""
    half = total_iters // 2
    common = list(overrides) + ["SOLVER.MAX_ITER", str(total_iters), "SOLVER.CHECKPOINT_PERIOD", str(half)]
    _, straight = run_pretraining(config_file, tmp_path / "straight", common)
    _, first = run_pretraining(config_file, tmp_path / "resumed", common, stop_after_iter=half)
    assert sorted(first["total_loss"]) == list(range(half)), "the interrupted run did not stop where asked"
    _, second = run_pretraining(config_file, tmp_path / "resumed", common, resume=True)
    assert sorted(second["total_loss"]) == list(range(half, total_iters)), (
        "resume did not continue at the checkpoint"
    )
    for name in ("total_loss", "tau", "lr"):
        resumed = {**first[name], **second[name]}
        assert resumed.keys() == straight[name].keys(), name
        for it, value in straight[name].items():
            assert np.isclose(resumed[it], value, rtol=1e-5, atol=1e-6), f"{name} differs at iteration {it}"
    assert_same_final_weights(tmp_path / "straight", tmp_path / "resumed", rtol=1e-4, atol=1e-5)
