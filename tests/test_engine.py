"""The pretraining engine end to end on a toy BYOL-style model: schedule, hooks, checkpoints, resume."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from corpus_testing import write_bad_images
from detectron2.config import configurable, get_cfg
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import EventStorage
from distributed_testing import run_distributed
from pretrain_testing import assert_resume_matches, pretrain_args, run_pretraining, write_tiny_images
from torch import nn
from torchvision import transforms

from soco.config import add_soco_config
from soco.data.build import VIEW_GENERATOR_REGISTRY
from soco.engine.hooks import SkippedImagesHook
from soco.engine.pretrain import run_pretraining as pretrain_main
from soco.engine.pretrain import setup_pretrain_cfg
from soco.engine.schedule import resolve_schedule
from soco.modeling.momentum import create_target, ema_update_
from soco.utils.metrics_file import read_metrics
from soco_proposals.image_io import DECODE_FAILURES

BASE_CONFIG = Path(__file__).resolve().parents[1] / "soco" / "configs" / "Base-Pretrain.yaml"


@VIEW_GENERATOR_REGISTRY.register()
class ToyTwoCrops:
    """Two random 8x8 crops of the image: enough randomness to test seeding."""

    def __init__(self, cfg):
        self.crop = transforms.Compose(
            [transforms.RandomResizedCrop(8, scale=(0.3, 1.0)), transforms.ToTensor()]
        )

    def __call__(self, image, proposals):
        return {"view1": self.crop(image), "view2": self.crop(image)}


@META_ARCH_REGISTRY.register()
class ToyBYOL(nn.Module):
    """Online encoder + predictor, momentum target encoder, negative cosine loss."""

    @configurable
    def __init__(self, *, hidden: int = 16):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.BatchNorm1d(hidden), nn.ReLU()
        )
        self.predictor = nn.Linear(hidden, hidden)
        self.target = nn.ModuleDict({"encoder": create_target(self.encoder)})
        self.after_backward_iters: list[int] = []

    @classmethod
    def from_config(cls, cfg):
        return {}

    def forward(self, batch):
        online = self.predictor(self.encoder(batch["view1"]))
        with torch.no_grad():
            target = self.target["encoder"](batch["view2"])
        return {"loss_cos": -2 * F.cosine_similarity(online, target, dim=1).mean()}

    def momentum_update(self, tau: float) -> None:
        ema_update_(self.target["encoder"], self.encoder, tau)

    def after_backward(self, iteration: int) -> None:
        self.after_backward_iters.append(iteration)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return write_tiny_images(tmp_path_factory.mktemp("images"), count=6)


@pytest.fixture(scope="module")
def toy_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "toy.yaml"
    path.write_text(
        f'_BASE_: "{BASE_CONFIG}"\n'
        "MODEL:\n  META_ARCHITECTURE: ToyBYOL\n"
        "PRETRAIN:\n  DATA:\n    VIEW_GENERATOR: ToyTwoCrops\n"
        "SOLVER:\n  IMS_PER_BATCH: 4\n  BASE_LR: 0.5\n  MAX_ITER: 6\n  WARMUP_ITERS: 2\n"
        "  LOG_PERIOD: 1\n  CHECKPOINT_PERIOD: 100\n"
        "DATALOADER:\n  NUM_WORKERS: 0\n"
    )
    return str(path)


def _cfg(**solver):
    cfg = get_cfg()
    add_soco_config(cfg)
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def test_resolve_schedule_from_epochs_and_batch_scaling():
    cfg = _cfg(EPOCHS=100, WARMUP_EPOCHS=10, IMS_PER_BATCH=2048, BASE_LR=1.0, LR_REFERENCE_BATCH=256)
    resolved = resolve_schedule(cfg, num_images=1_281_167)
    assert resolved.SOLVER.ITERS_PER_EPOCH == 625  # 1,281,167 // 2048, the original's drop_last
    assert resolved.SOLVER.MAX_ITER == 62_500
    assert resolved.SOLVER.WARMUP_ITERS == 6_250
    assert resolved.SOLVER.BASE_LR == pytest.approx(8.0)
    again = resolve_schedule(resolved, num_images=1_281_167)
    assert (again.SOLVER.MAX_ITER, again.SOLVER.BASE_LR) == (62_500, pytest.approx(8.0))
    assert cfg.SOLVER.EPOCHS == 100, "the input config must not be modified"


def test_resolve_schedule_rejects_batch_larger_than_corpus():
    with pytest.raises(ValueError, match="larger than the 10 images"):
        resolve_schedule(_cfg(EPOCHS=1, IMS_PER_BATCH=16), num_images=10)


def test_training_logs_tau_lr_and_writes_checkpoints(toy_config, image_root, tmp_path):
    out = tmp_path / "run"
    trainer, values = run_pretraining(toy_config, out, ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root)])
    assert (out / "model_final.pth").is_file() and (out / "last_checkpoint").is_file()
    losses = list(values["total_loss"].values())
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    taus = values["tau"]
    assert taus[0] == pytest.approx(0.99) and all(taus[i] < taus[i + 1] for i in range(5))
    lrs = values["lr"]
    assert lrs[0] == pytest.approx(0.5 * 4 / 256 * 0.01)  # batch-scaled, warm-up from 1/100
    assert trainer.model.after_backward_iters == list(range(6))
    metrics = read_metrics(out / "metrics.json")
    assert {"tau", "lr", "data_time", "total_loss"} <= set(metrics[-1])
    assert any("images_per_sec" in m for m in metrics)
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard event file"


def test_target_branch_gets_no_gradient_and_follows_ema(toy_config, image_root, tmp_path):
    trainer, _ = run_pretraining(toy_config, tmp_path / "run", ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root)])
    model = trainer.model
    assert all(p.grad is None for p in model.target.parameters())
    online = torch.cat([p.flatten() for p in model.encoder.parameters()])
    target = torch.cat([p.flatten() for p in model.target.parameters()])
    assert not torch.equal(online, target), "the target must lag behind the online network"
    assert torch.allclose(online, target, atol=0.05), (
        "with tau ~0.99 the target stays close to the online network"
    )


def test_resume_equals_uninterrupted_run(toy_config, image_root, tmp_path):
    assert_resume_matches(toy_config, tmp_path, ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root)], total_iters=6)


def test_data_stream_does_not_depend_on_worker_count(toy_config, image_root, tmp_path):
    runs = {}
    for workers in (0, 2):
        opts = [
            "PRETRAIN.DATA.IMAGE_ROOT",
            str(image_root),
            "DATALOADER.NUM_WORKERS",
            str(workers),
            "SOLVER.MAX_ITER",
            "3",
        ]
        _, values = run_pretraining(toy_config, tmp_path / f"w{workers}", opts)
        runs[workers] = values["total_loss"]
    assert runs[0] == pytest.approx(runs[2])


def test_cli_main_runs_and_refuses_a_random_seed(toy_config, image_root, tmp_path):
    opts = [
        "PRETRAIN.DATA.IMAGE_ROOT",
        str(image_root),
        "OUTPUT_DIR",
        str(tmp_path / "cli"),
        "MODEL.DEVICE",
        "cpu",
    ]
    with pytest.raises(ValueError, match="WARMUP_ITERS=2 must be smaller"):
        pretrain_main(pretrain_args(toy_config, opts + ["SOLVER.MAX_ITER", "2"]))
    pretrain_main(pretrain_args(toy_config, opts + ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1"]))
    assert (tmp_path / "cli" / "model_final.pth").is_file()
    assert (tmp_path / "cli" / "config.yaml").is_file()
    with pytest.raises(ValueError, match="fixed SEED"):
        pretrain_main(pretrain_args(toy_config, opts + ["SEED", "-1", "OUTPUT_DIR", str(tmp_path / "cli2")]))


def test_periodic_checkpoints_are_pruned(toy_config, image_root, tmp_path):
    out = tmp_path / "run"
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root), "SOLVER.CHECKPOINT_PERIOD", "1"]
    run_pretraining(toy_config, out, opts + ["SOLVER.CHECKPOINT_MAX_TO_KEEP", "2"])
    assert sorted(p.name for p in out.glob("model_0*.pth")) == ["model_0000004.pth", "model_0000005.pth"]
    assert (out / "model_final.pth").is_file()


def test_an_explicit_iteration_count_replaces_the_epoch_schedule(image_root):
    configs = Path(__file__).resolve().parents[1] / "soco" / "configs"
    published = str(configs / "SoCo_FPN_100ep.yaml")  # 100 epochs, 10 of warm-up
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root), "SOLVER.IMS_PER_BATCH", "2"]  # 6 images: 3 per epoch
    by_epochs = setup_pretrain_cfg(published, opts)
    assert (by_epochs.SOLVER.MAX_ITER, by_epochs.SOLVER.WARMUP_ITERS) == (300, 30)
    asked = setup_pretrain_cfg(published, opts + ["SOLVER.MAX_ITER", "7"])
    assert (asked.SOLVER.MAX_ITER, asked.SOLVER.WARMUP_ITERS) == (7, 1)  # the warm-up keeps its 10 %
    assert asked.SOLVER.ITERS_PER_EPOCH == 3
    both = setup_pretrain_cfg(published, opts + ["SOLVER.MAX_ITER", "7", "SOLVER.WARMUP_ITERS", "3"])
    assert (both.SOLVER.MAX_ITER, both.SOLVER.WARMUP_ITERS) == (7, 3)
    # the other way round: epochs on the command line beat the iteration count of the config file
    tiny = setup_pretrain_cfg(str(configs / "tiny" / "SoCo_FPN.yaml"), opts + ["SOLVER.EPOCHS", "5"])
    assert (tiny.SOLVER.MAX_ITER, tiny.SOLVER.WARMUP_ITERS) == (15, 2)


def test_a_run_with_an_explicit_iteration_count_runs_it_and_says_so(toy_config, image_root, tmp_path):
    out = tmp_path / "asked"
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root), "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"]
    opts += ["SOLVER.EPOCHS", "50", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1"]
    trainer = pretrain_main(pretrain_args(toy_config, opts))
    assert trainer.iter == 3
    assert [record["iteration"] for record in read_metrics(out / "metrics.json")] == [0, 1, 2]
    log = (out / "log.txt").read_text()
    assert "SOLVER.MAX_ITER=3 replaces SOLVER.EPOCHS=50 (50 iterations)" in log
    assert "on 1 process(es): 4 images per process (GPU), global batch 4," in log
    assert re.search(r"1 timed steps: [\d.]+ images/s, data time [\d.]+% of a step", log)



class _FakeTrainer:
    """What SkippedImagesHook reads: the iteration, the storage and the loader's per-kind counts."""

    def __init__(self, storage):
        self.storage = storage
        self.iter = 0
        self.data_loader = type("Loader", (), {"skipped": np.zeros(len(DECODE_FAILURES), dtype=np.int64)})()


def test_skipped_images_hook_reports_totals_and_resumes_them():
    with EventStorage(0) as storage:
        trainer = _FakeTrainer(storage)
        hook = SkippedImagesHook(period=2, checkpoint_period=3, max_iter=10)
        hook.trainer = trainer
        reported = {}
        for iteration in range(6):
            trainer.iter = storage.iter = iteration
            trainer.data_loader.skipped[DECODE_FAILURES.index("truncated")] += iteration % 2
            hook.after_step()
            if "data/skipped_images" in storage.histories():
                reported[iteration] = storage.history("data/skipped_images").latest()
        # reported after iterations 1 (period), 2 (checkpoint period), 3 (period) and 5 (both)
        assert reported == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}
        assert storage.history("data/skipped_images/truncated").latest() == 3
        state = hook.state_dict()
    assert state == {"skipped_images": {kind: 3 * (kind == "truncated") for kind in DECODE_FAILURES}}
    with EventStorage(6) as storage:
        resumed = SkippedImagesHook(period=2, checkpoint_period=3, max_iter=10)
        resumed.load_state_dict(state)
        resumed.trainer = _FakeTrainer(storage)
        resumed.trainer.iter = storage.iter = 7
        resumed.trainer.data_loader.skipped[DECODE_FAILURES.index("empty_file")] = 2
        resumed.after_step()
        assert storage.history("data/skipped_images").latest() == 5


def test_a_bad_image_never_stops_training_and_is_reported(toy_config, tmp_path):
    root = write_tiny_images(tmp_path / "images", count=6)
    write_bad_images(root / "bad")
    out = tmp_path / "run"
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(root), "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2"]
    opts += ["SOLVER.WARMUP_ITERS", "1"]
    run_pretraining(toy_config, out, opts)
    metrics = read_metrics(out / "metrics.json")
    totals = [m["data/skipped_images"] for m in metrics]
    assert len(totals) == 4 and totals == sorted(totals) and totals[-1] > 0
    per_kind = sum(metrics[-1][f"data/skipped_images/{kind}"] for kind in DECODE_FAILURES)
    assert per_kind == totals[-1]
    # killed after the checkpoint at iteration 1
    run_pretraining(toy_config, tmp_path / "half", opts, stop_after_iter=3)
    run_pretraining(toy_config, tmp_path / "half", opts, resume=True)
    resumed = [record["data/skipped_images"] for record in read_metrics(tmp_path / "half" / "metrics.json")]
    assert resumed[-1] == totals[-1], "the resumed run continues the count of the checkpoint"


def _sum_over_ranks(rank_counts: list[int]) -> None:
    import torch.distributed as dist

    rank = dist.get_rank()
    with EventStorage(0) as storage:
        trainer = _FakeTrainer(storage)
        trainer.data_loader.skipped[0] = rank_counts[rank]
        hook = SkippedImagesHook(period=1, checkpoint_period=100, max_iter=10)
        hook.trainer = trainer
        hook.after_step()
        assert storage.history("data/skipped_images").latest() == sum(rank_counts), "summed over all ranks"


def test_skipped_images_are_summed_over_ranks(tmp_path):
    run_distributed(_sum_over_ranks, tmp_path, [3, 5])


def test_bf16_autocast_trains_on_cpu_and_logs_the_data_time_share(toy_config, image_root, tmp_path):
    out = tmp_path / "bf16"
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(image_root), "SOLVER.AMP.ENABLED", "True"]
    trainer, values = run_pretraining(toy_config, out, opts + ["SOLVER.AMP.PRECISION", "bfloat16"])
    assert trainer._trainer.precision is torch.bfloat16 and trainer._trainer.grad_scaler is None
    assert all(torch.isfinite(torch.tensor(list(values["total_loss"].values()))))
    metrics = read_metrics(out / "metrics.json")
    shares = [m["data_time_share"] for m in metrics if "data_time_share" in m]
    assert shares and all(0 < share < 1 for share in shares)
