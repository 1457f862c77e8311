"""World-size rules: keep the global batch (default), or keep the per-GPU batch by SOLVER.IMS_PER_GPU or by
Detectron2's SOLVER.REFERENCE_WORLD_SIZE; the log states per-GPU batch, global batch, lr and epoch length."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from detectron2.config import get_cfg

from soco.config import add_soco_config
from soco.engine.schedule import (
    COMMAND_LINE,
    CONFIG_FILE,
    describe_schedule,
    describe_world_size_changes,
    resolve_schedule,
    scale_to_world_size,
)

IMAGENET = 1_281_167
#: the published SoCo recipe as its YAML sets it: 2048 images (16 GPUs x 128), lr 1.0 per 256, 100 epochs
RECIPE = {"IMS_PER_BATCH": 2048, "BASE_LR": 1.0, "EPOCHS": 100, "WARMUP_EPOCHS": 10, "CHECKPOINT_PERIOD": 625}
RECIPE_SOURCES = {f"SOLVER.{key}": CONFIG_FILE for key in RECIPE}


def _cfg(**solver):
    cfg = get_cfg()
    add_soco_config(cfg)
    for key, value in {**RECIPE, **solver}.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def test_by_default_the_global_batch_stays_and_the_log_says_what_each_gpu_gets():
    cfg = _cfg()
    resolved = resolve_schedule(cfg, IMAGENET, RECIPE_SOURCES, world_size=8)
    solver = resolved.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.ITERS_PER_EPOCH) == (2048, 8.0, 625)
    line = describe_schedule(cfg, resolved, RECIPE_SOURCES, world_size=8)
    assert "on 8 process(es): 256 images per process (GPU), global batch 2048, BASE_LR 8," in line
    assert "625 iterations per epoch, MAX_ITER 62500, WARMUP_ITERS 6250" in line


def test_ims_per_gpu_keeps_the_per_gpu_batch_and_scales_batch_lr_and_epochs():
    cfg = _cfg(IMS_PER_GPU=128)
    sources = {**RECIPE_SOURCES, "SOLVER.IMS_PER_GPU": COMMAND_LINE}
    resolved = resolve_schedule(cfg, IMAGENET, sources, world_size=8)
    solver = resolved.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR) == (1024, 4.0)
    assert (solver.ITERS_PER_EPOCH, solver.MAX_ITER, solver.WARMUP_ITERS) == (1251, 125_100, 12_510)
    assert solver.CHECKPOINT_PERIOD == 1250  # one epoch of the recipe, as with REFERENCE_WORLD_SIZE
    line = describe_schedule(cfg, resolved, sources, world_size=8)
    assert "128 images per process (GPU), global batch 1024, BASE_LR 4," in line
    assert "SOLVER.IMS_PER_GPU=128 replaces IMS_PER_BATCH 2048" in line
    assert "world-size rule: SOLVER.IMS_PER_BATCH 2048->1024, " in line
    assert "SOLVER.CHECKPOINT_PERIOD 625->1250" in line and "MAX_ITER" not in line.split("world-size")[1]
    assert resolve_schedule(resolved, IMAGENET, sources, world_size=8).SOLVER.IMS_PER_BATCH == 1024


def test_reference_world_size_scales_like_detectron2():
    cfg = _cfg(REFERENCE_WORLD_SIZE=16)
    resolved = resolve_schedule(cfg, IMAGENET, RECIPE_SOURCES, world_size=8)
    solver = resolved.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.ITERS_PER_EPOCH) == (1024, 4.0, 1251)
    assert (solver.MAX_ITER, solver.CHECKPOINT_PERIOD, solver.REFERENCE_WORLD_SIZE) == (125_100, 1250, 8)
    line = describe_schedule(cfg, resolved, RECIPE_SOURCES, world_size=8)
    assert "128 images per process (GPU), global batch 1024" in line
    assert "SOLVER.REFERENCE_WORLD_SIZE=16: the config's global batch 2048" in line
    again = resolve_schedule(resolved, IMAGENET, RECIPE_SOURCES, world_size=8)
    assert (again.SOLVER.IMS_PER_BATCH, again.SOLVER.MAX_ITER, again.SOLVER.BASE_LR) == (1024, 125_100, 4.0)


def test_reference_world_size_scales_explicit_iterations_and_an_unscaled_lr():
    """An iteration-based config without the linear lr rule: Detectron2's auto_scale_workers, exactly."""
    cfg = _cfg(
        EPOCHS=0, WARMUP_EPOCHS=0, MAX_ITER=1000, WARMUP_ITERS=100, STEPS=(600, 800),
        LR_REFERENCE_BATCH=0, BASE_LR=0.8, REFERENCE_WORLD_SIZE=16,
    )  # fmt: skip
    solver = resolve_schedule(cfg, None, RECIPE_SOURCES, world_size=4).SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR) == (512, pytest.approx(0.2))
    assert (solver.MAX_ITER, solver.WARMUP_ITERS, tuple(solver.STEPS)) == (4000, 400, (2400, 3200))
    assert solver.CHECKPOINT_PERIOD == 2500


EXPECTED_CHANGES = (
    "SOLVER.IMS_PER_BATCH 1024->256", "SOLVER.BASE_LR 0.8->0.2", "SOLVER.MAX_ITER 1000->4000",
    "SOLVER.WARMUP_ITERS 100->400", "SOLVER.STEPS (600,800)->(2400,3200)",
    "SOLVER.CHECKPOINT_PERIOD 250->1000", "PRETRAIN.EVAL_PERIOD 100->400",
    "SWAV.QUEUE_START_ITER 150->600", "SWAV.FREEZE_PROTOTYPES_ITERS 10->40",
)  # fmt: skip


def test_both_world_size_rules_rescale_the_same_iteration_keys_and_log_each():
    """An iteration-based SwAV config with probes: IMS_PER_GPU and REFERENCE_WORLD_SIZE that both quarter
    the batch multiply every iteration key (schedule, checkpoints, probes, SwAV's phases) by 4."""
    iteration_based = dict(
        EPOCHS=0, WARMUP_EPOCHS=0, MAX_ITER=1000, WARMUP_ITERS=100, STEPS=(600, 800), IMS_PER_BATCH=1024,
        LR_REFERENCE_BATCH=0, BASE_LR=0.8, CHECKPOINT_PERIOD=250,
    )  # fmt: skip
    resolved = {}
    for rule, value in (("IMS_PER_GPU", 64), ("REFERENCE_WORLD_SIZE", 16)):
        cfg = _cfg(**iteration_based, **{rule: value})
        cfg.PRETRAIN.EVAL_PERIOD = 100
        cfg.SWAV.QUEUE_START_ITER, cfg.SWAV.FREEZE_PROTOTYPES_ITERS = 150, 10
        sources = {**RECIPE_SOURCES, f"SOLVER.{rule}": COMMAND_LINE}
        resolved[rule] = resolve_schedule(cfg, None, sources, world_size=4)
        line = describe_schedule(cfg, resolved[rule], sources, world_size=4)
        for change in EXPECTED_CHANGES:
            assert change in line, (rule, change, line)
    by_gpu, by_reference = resolved["IMS_PER_GPU"], resolved["REFERENCE_WORLD_SIZE"]
    for key in ("IMS_PER_BATCH", "BASE_LR", "MAX_ITER", "WARMUP_ITERS", "STEPS", "CHECKPOINT_PERIOD"):
        assert by_gpu.SOLVER[key] == by_reference.SOLVER[key], key
    assert by_gpu.PRETRAIN.EVAL_PERIOD == by_reference.PRETRAIN.EVAL_PERIOD == 400
    assert by_gpu.SWAV.QUEUE_START_ITER == by_reference.SWAV.QUEUE_START_ITER == 600
    assert by_gpu.SWAV.FREEZE_PROTOTYPES_ITERS == by_reference.SWAV.FREEZE_PROTOTYPES_ITERS == 40


def test_the_world_size_rule_leaves_keys_a_config_lacks_and_periods_off():
    """A fine-tuning-like config without PRETRAIN or SWAV nodes (the linear-evaluation trainer's case)."""
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD = 256, 100, 3
    cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.REFERENCE_WORLD_SIZE = (), 0, 2
    changes = scale_to_world_size(cfg, 8, {})
    assert changes == [
        ("SOLVER.IMS_PER_BATCH", 256, 1024), ("SOLVER.REFERENCE_WORLD_SIZE", 2, 8),
        ("SOLVER.BASE_LR", cfg.SOLVER.BASE_LR / 4, cfg.SOLVER.BASE_LR), ("SOLVER.MAX_ITER", 100, 25),
        ("SOLVER.CHECKPOINT_PERIOD", 3, 1),
    ]  # fmt: skip
    assert describe_world_size_changes(changes).startswith("SOLVER.IMS_PER_BATCH 256->1024, ")


def test_world_size_rules_refuse_ambiguous_or_impossible_batches():
    sources = RECIPE_SOURCES
    with pytest.raises(ValueError, match="two rules for the batch size"):
        resolve_schedule(_cfg(IMS_PER_GPU=64, REFERENCE_WORLD_SIZE=16), IMAGENET, sources, world_size=8)
    both = {**RECIPE_SOURCES, "SOLVER.IMS_PER_BATCH": COMMAND_LINE, "SOLVER.IMS_PER_GPU": COMMAND_LINE}
    with pytest.raises(ValueError, match="give the global batch or the per-GPU batch, not both"):
        resolve_schedule(_cfg(IMS_PER_GPU=64), IMAGENET, both, world_size=8)
    with pytest.raises(ValueError, match="cannot be scaled to 3 processes"):
        resolve_schedule(_cfg(IMS_PER_BATCH=4, REFERENCE_WORLD_SIZE=8), IMAGENET, sources, world_size=3)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        resolve_schedule(_cfg(), IMAGENET, sources, world_size=3)


def test_launcher_passes_the_per_gpu_batch(tmp_path):
    launcher = Path(__file__).resolve().parents[1] / "tools" / "SoCo_FPN_100ep.sh"
    command = [str(launcher), "--data", "imgs", "--gpus", "8", "--ims-per-gpu", "128"]
    result = subprocess.run(
        [*command, "--dry-run"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[words.index("SOLVER.IMS_PER_GPU") + 1] == "128" and "--num-gpus" in words
