"""The GPU fast path on CPU: the AMP step runner (bf16, fp16 + GradScaler feeding LARS), channels_last,
a torch.compile'd backbone, and the SyncBN guard for CPU processes."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.engine import HookBase
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, build_model
from pretrain_testing import write_tiny_images
from torch import nn

from soco.config import add_soco_config
from soco.data import batch_keys
from soco.data.build import build_pretrain_train_loader
from soco.engine.distributed import check_sync_norms_can_run
from soco.engine.fast_path import backbone_modules, compile_backbones, to_channels_last
from soco.engine.pretrain import setup_pretrain_cfg
from soco.engine.step import PretrainStepRunner, amp_precision, build_step_runner
from soco.solver import LARS

CONFIGS = Path(__file__).resolve().parents[1] / "soco" / "configs" / "tiny"


class _Toy(nn.Module):
    """Linear -> BN -> ReLU -> Linear with a squared loss; its batches are fixed tensors."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, batch):
        return {"loss_toy": (self.net(batch["x"]).float() - batch["y"]).pow(2).mean()}


def _lars(model: nn.Module) -> LARS:
    """LARS groups as soco builds them; weight decay 0.1 so that scaled gradients would change the
    adapted update's direction, and plain SGD (no adaptation) for the 1-D parameters."""
    matrices = [p for p in model.parameters() if p.ndim > 1]
    vectors = [p for p in model.parameters() if p.ndim == 1]
    groups = [
        {"params": matrices, "weight_decay": 0.1, "lars_adapt": True},
        {"params": vectors, "weight_decay": 0.0, "lars_adapt": False},
    ]
    return LARS(groups, lr=0.1, momentum=0.9, trust_coefficient=0.01)


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 16, generator=generator), torch.randn(8, 4, generator=generator)
    return [{"x": x, "y": y}] * count


def _train(precision, scaler=None, iters: int = 1, hooks=()) -> tuple[nn.Module, PretrainStepRunner]:
    model = _Toy()
    runner = PretrainStepRunner(model, _batches(iters), _lars(model), precision, scaler, device_type="cpu")
    runner.register_hooks(list(hooks))
    runner.train(0, iters)
    return model, runner


def _updates(model: nn.Module) -> list[torch.Tensor]:
    return [after - before for after, before in zip(model.parameters(), _Toy().parameters(), strict=True)]


def test_fp16_step_unscales_before_lars():
    fp32, _ = _train(None)
    fp16, runner = _train(torch.float16, torch.amp.GradScaler("cpu", init_scale=2.0**12))
    assert runner.skipped_steps == 0
    for update16, update32 in zip(_updates(fp16), _updates(fp32), strict=True):
        # with the 4096x scaled gradients, the plain SGD updates would be 4096x too large
        torch.testing.assert_close(update16, update32, rtol=0.05, atol=1e-4)


class _PoisonGradient(HookBase):
    """Make one gradient inf at one iteration, as an fp16 overflow would."""

    def __init__(self, iteration: int):
        self.iteration = iteration
        self.weights_before: list[torch.Tensor] = []

    def after_backward(self) -> None:
        if self.trainer.iter == self.iteration:
            self.weights_before = [p.detach().clone() for p in self.trainer.model.parameters()]
            next(self.trainer.model.parameters()).grad[0, 0] = float("inf")


class _RecordAfterStep(HookBase):
    def __init__(self):
        self.weights: dict[int, list[torch.Tensor]] = {}
        self.skipped: dict[int, float] = {}

    def after_step(self) -> None:
        self.weights[self.trainer.iter] = [p.detach().clone() for p in self.trainer.model.parameters()]
        self.skipped[self.trainer.iter] = self.trainer.storage.history("amp/skipped_steps").latest()


def test_fp16_step_with_inf_gradient_is_skipped_and_counted():
    poison, record = _PoisonGradient(iteration=1), _RecordAfterStep()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _, runner = _train(torch.float16, scaler, iters=3, hooks=[poison, record])
    assert runner.skipped_steps == 1 and record.skipped == {0: 0, 1: 1, 2: 1}
    for before, after in zip(poison.weights_before, record.weights[1], strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)  # the skipped step left every weight as is
    assert not all(torch.equal(a, b) for a, b in zip(record.weights[1], record.weights[2], strict=True))
    assert scaler.get_scale() == 2.0**11  # backed off once
    state = runner.state_dict()
    assert state["amp_skipped_steps"] == 1 and "grad_scaler" in state


def test_bf16_step_runs_without_a_scaler_close_to_fp32():
    fp32, _ = _train(None)
    bf16, runner = _train(torch.bfloat16)
    assert runner.grad_scaler is None
    for update16, update32 in zip(_updates(bf16), _updates(fp32), strict=True):
        torch.testing.assert_close(update16, update32, rtol=0.1, atol=1e-3)
    with pytest.raises(ValueError, match="only needed"):
        PretrainStepRunner(_Toy(), [], _lars(_Toy()), torch.bfloat16, torch.amp.GradScaler("cpu"))


def _cfg(device: str, enabled: bool = True, precision: str = "float16"):
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.MODEL.DEVICE = device
    cfg.SOLVER.AMP.ENABLED = enabled
    cfg.SOLVER.AMP.PRECISION = precision
    return cfg


def test_amp_settings_per_device(caplog):
    assert amp_precision(_cfg("cuda")) is torch.float16
    assert amp_precision(_cfg("cuda", precision="bfloat16")) is torch.bfloat16
    assert amp_precision(_cfg("cpu", precision="bfloat16")) is torch.bfloat16
    assert amp_precision(_cfg("cuda", enabled=False)) is None
    with caplog.at_level(logging.WARNING, logger="soco.engine.step"):
        assert amp_precision(_cfg("cpu")) is None
    assert "float16 is ignored on device cpu" in caplog.text
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION must be one of"):
        amp_precision(_cfg("cuda", precision="fp8"))
    model = _Toy()
    assert build_step_runner(_cfg("cpu", precision="bfloat16"), model, _lars(model)).grad_scaler is None
    assert isinstance(build_step_runner(_cfg("cuda"), model, _lars(model)).grad_scaler, torch.amp.GradScaler)


@pytest.fixture(scope="module")
def soco_setup(tmp_path_factory):
    """The tiny SoCo FPN model and one batch."""
    root = tmp_path_factory.mktemp("soco")
    images = write_tiny_images(root / "images", count=4)
    boxes = [[2, 3, 30, 25], [20, 10, 40, 35], [0, 0, 60, 50], [35, 30, 25, 28]]
    proposals = root / "proposals.json"
    proposals.write_text("{" + ", ".join(f'"img_{i:03d}": {boxes}' for i in range(4)) + "}")
    cfg = setup_pretrain_cfg(
        str(CONFIGS / "SoCo_FPN.yaml"),
        ["PRETRAIN.DATA.IMAGE_ROOT", str(images), "PRETRAIN.DATA.PROPOSALS", str(proposals)],
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    return model, next(iter(build_pretrain_train_loader(cfg)))


def _loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return sum(model(batch).values())


def test_soco_under_bf16_autocast_pools_and_scores_in_fp32(soco_setup):
    model, batch = soco_setup
    model = copy.deepcopy(model)
    dtypes = []
    handle = model.pooler.level_poolers[0].register_forward_pre_hook(
        lambda module, args: dtypes.append(args[0].dtype)
    )
    box_sets = batch_keys.box_sets(batch_keys.pairs(batch))
    with torch.no_grad():
        fp32 = model.online_branch().embed_box_sets(batch, box_sets)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(batch)
            bf16 = model.online_branch().embed_box_sets(batch, box_sets)
    handle.remove()
    assert set(dtypes) == {torch.float32}  # RoIAlign's input, also under autocast
    assert all(loss.dtype == torch.float32 for loss in losses.values())
    # bf16 keeps 8 mantissa bits: compare the embeddings by direction (what the -2 cos loss sees), not the
    # loss value, which sums terms near 0 for a random model and carries their absolute errors (~0.03 each)
    for name in box_sets:
        cosine = nn.functional.cosine_similarity(bf16[name].float().flatten(0, 1), fp32[name].flatten(0, 1))
        assert cosine.min() > 0.99, (name, cosine.min())


def test_channels_last_gives_the_same_loss_and_state_dict_names(soco_setup):
    """In float64: the NHWC kernels sum in another order (float32 losses differ by ~1e-5 here)."""
    model, batch = soco_setup
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    contiguous = copy.deepcopy(model).double()
    fast = to_channels_last(copy.deepcopy(model).double())
    conv = fast.roi_heads.box_head.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert fast.target.backbone.bottom_up.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(_loss(fast, batch), _loss(contiguous, batch), rtol=1e-12, atol=1e-12)
    restored = copy.deepcopy(model)
    restored.load_state_dict(fast.state_dict())  # checkpoints load into a contiguous model
    assert fast.state_dict().keys() == model.state_dict().keys()


@BACKBONE_REGISTRY.register()
class TinyConvBackbone(Backbone):
    """Two strided 3x3 convs with norms: a backbone whose inductor compile takes seconds, not minutes."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        norm = cfg.MODEL.RESNETS.NORM
        self.conv1 = Conv2d(3, 8, 3, stride=2, padding=1, bias=False, norm=get_norm(norm, 8))
        self.conv2 = Conv2d(8, 16, 3, stride=2, padding=1, bias=False, norm=get_norm(norm, 16))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"res5": torch.relu(self.conv2(torch.relu(self.conv1(x))))}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"res5": ShapeSpec(channels=16, stride=4)}


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor needs a C++ compiler")
def test_compiled_backbone_gives_the_eager_loss(tmp_path, monkeypatch):
    """SwAV with one crop size (one graph, no momentum copy) on a two-conv backbone, inductor on CPU."""
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no worker pool to start for two kernels
    images = write_tiny_images(tmp_path / "images", count=4)
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(images), "MODEL.BACKBONE.NAME", "TinyConvBackbone"]
    opts += ["SWAV.VIEWS.SIZES", "[32]", "SWAV.VIEWS.NUM_CROPS", "[2]", "SWAV.VIEWS.MIN_SCALES", "[0.14]"]
    opts += ["SWAV.VIEWS.MAX_SCALES", "[1.0]", "SWAV.QUEUE_LENGTH", "0", "MODEL.RESNETS.NORM", "BN"]
    cfg = setup_pretrain_cfg(str(CONFIGS / "SwAV.yaml"), opts)
    torch.manual_seed(0)
    eager = build_model(cfg)
    compiled = copy.deepcopy(eager)
    assert compile_backbones(compiled, "inductor", "default") == ["backbone"]
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # nn.Module.compile keeps the names
    batch = next(iter(build_pretrain_train_loader(cfg)))
    eager_loss, compiled_loss = _loss(eager, batch), _loss(compiled, batch)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    eager_loss.backward()
    compiled_loss.backward()
    # the whole gradient vector (a few parameters, e.g. biases before a BN, have gradients at rounding level)
    eager_grad = torch.cat([p.grad.flatten() for p in eager.parameters() if p.grad is not None])
    compiled_grad = torch.cat([p.grad.flatten() for p in compiled.parameters() if p.grad is not None])
    error = float((compiled_grad - eager_grad).norm() / eager_grad.norm())
    assert error < 1e-5, f"the compiled backbone's gradients differ by {error:.2e} of their norm"


def test_backbones_of_online_and_target_networks(soco_setup):
    model, _ = soco_setup
    assert sorted(backbone_modules(model)) == ["backbone", "target.backbone"]
    with pytest.raises(ValueError, match="no module named 'backbone'"):
        compile_backbones(nn.Linear(2, 2), "inductor", "default")


def test_sync_bn_in_cpu_processes_fails_early_naming_the_fix(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.SyncBatchNorm(4))
    check_sync_norms_can_run(model, torch.device("cpu"))  # one process: SyncBN is plain BN
    monkeypatch.setattr("soco.engine.distributed.comm.get_world_size", lambda: 2)
    check_sync_norms_can_run(model, torch.device("cuda"))
    with pytest.raises(ValueError, match="SyncBN needs CUDA.*: 1.*naiveSyncBN"):
        check_sync_norms_can_run(model, torch.device("cpu"))

