"""Pre-emption in one process: a stop signal becomes a checkpoint of the finished iteration and a resume that
continues bit for bit; resumes with another batch or schedule are refused; checkpoints appear atomically;
DataLoader workers ignore the stop signals. (Two processes through submitit: tests/test_submit.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode
from detectron2.engine import HookBase
from pretrain_testing import assert_same_final_weights, run_pretraining, write_tiny_images
from submitit.core.job_environment import SignalHandler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from soco.data.build import STOP_SIGNALS, ignore_stop_signals
from soco.engine.linear.data import _loader as linear_loader
from soco.engine.preemption import preemption_signal, requeue_submitit_job, stop_requested, stop_requests
from soco.engine.trainer import AtomicCheckpointer
from soco.utils.metrics_file import read_metrics

CONFIG = str(Path(__file__).resolve().parents[1] / "soco" / "configs" / "tiny" / "MoCoV2.yaml")


class _SignalDuring(HookBase):
    """Send ``signum`` to this process while iteration ``iteration`` runs (before its step)."""

    def __init__(self, iteration: int, signum: int):
        self.iteration, self.signum = iteration, signum

    def before_step(self) -> None:
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), self.signum)


def test_a_stop_signal_saves_the_iteration_and_the_resume_continues_bit_for_bit(tmp_path):
    images = write_tiny_images(tmp_path / "images", count=8)
    opts = ["PRETRAIN.DATA.IMAGE_ROOT", str(images), "MOCO.VIEWS.SIZE", "32", "SOLVER.MAX_ITER", "6"]
    opts += ["SOLVER.PREEMPTION_SIGNAL", "SIGUSR1"]
    run_pretraining(CONFIG, tmp_path / "straight", opts)

    stopped = tmp_path / "stopped"
    # iteration 1: logged (LOG_PERIOD 1) before IterationTimer's warm-up ends, where Detectron2's printer
    # divided by zero when the writers wrote again at the stop (soco.utils.writers)
    trainer, _ = run_pretraining(CONFIG, stopped, opts, hooks=[_SignalDuring(1, signal.SIGUSR1)])
    assert trainer.preempted_at == 1
    assert (stopped / "last_checkpoint").read_text() == "model_0000001.pth"
    assert torch.load(stopped / "model_0000001.pth", map_location="cpu")["iteration"] == 1
    assert not list(stopped.glob("*.tmp")) and not (stopped / "model_final.pth").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler left with the training

    with pytest.raises(ValueError, match=r"SOLVER.IMS_PER_BATCH 8 here, 4 in the checkpoint.*new OUTPUT_DIR"):
        run_pretraining(CONFIG, stopped, [*opts, "SOLVER.IMS_PER_BATCH", "8"], resume=True)
    with pytest.raises(ValueError, match=r"SOLVER.MAX_ITER 7 here, 6 in the checkpoint"):
        run_pretraining(CONFIG, stopped, [*opts, "SOLVER.MAX_ITER", "7"], resume=True)

    resumed, _ = run_pretraining(CONFIG, stopped, opts, resume=True)
    assert resumed.start_iter == 2 and resumed.preempted_at is None
    logged = [row["iteration"] for row in read_metrics(stopped / "metrics.json") if "total_loss" in row]
    assert logged == list(range(6))  # no iteration repeated or skipped
    assert_same_final_weights(tmp_path / "straight", stopped)  # bit for bit


def test_a_failed_save_leaves_the_last_complete_checkpoint(tmp_path):
    checkpointer = AtomicCheckpointer(nn.Linear(2, 2), str(tmp_path))
    checkpointer.save("model_0000004", iteration=4)
    with pytest.raises(Exception, match="pickle"):
        checkpointer.save("model_0000009", iteration=9, broken=lambda: None)  # dies mid-write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]
    assert checkpointer.get_checkpoint_file().endswith("model_0000004.pth")
    assert checkpointer.load(checkpointer.get_checkpoint_file())["iteration"] == 4


def test_the_stop_handler_only_records_and_is_put_back():
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    with stop_requests(signal.SIGUSR1):
        assert not stop_requested()
        with stop_requests(signal.SIGUSR1):  # nested (a job around a trainer): one record for both
            os.kill(os.getpid(), signal.SIGUSR1)
        assert stop_requested()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


class _HandlersInWorker(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, bool]:
        return {signal.Signals(s).name: signal.getsignal(s) is signal.SIG_IGN for s in STOP_SIGNALS}


def test_dataloader_workers_ignore_the_signals_their_process_handles():
    with stop_requests(signal.SIGUSR2):
        loader = DataLoader(_HandlersInWorker(), num_workers=1, worker_init_fn=ignore_stop_signals)
        (ignored,) = list(loader)
    # the stop signal the process handles is ignored in its worker; default dispositions stay (SIGUSR1)
    assert ignored["SIGUSR2"].item() and not ignored["SIGUSR1"].item()


def test_the_linear_protocols_loader_workers_ignore_the_stop_signals_too():
    cfg = CfgNode({"MODEL": {"DEVICE": "cpu"}})
    with stop_requests(signal.SIGUSR2):
        (ignored,) = list(linear_loader(cfg, _HandlersInWorker(), None, batch_size=1, workers=1))
    assert ignored["SIGUSR2"].item() and not ignored["SIGUSR1"].item()


def test_the_preemption_signal_setting(monkeypatch):
    assert preemption_signal("") == signal.SIGTERM  # outside a submitit job: torchrun's and Kubernetes'
    assert preemption_signal("SIGUSR1") == preemption_signal("USR1") == signal.SIGUSR1
    with pytest.raises(ValueError, match="SOLVER.PREEMPTION_SIGNAL='SIGNOPE' is not a signal name"):
        preemption_signal("SIGNOPE")
    # inside a submitit job (submitit's handler on SIGUSR2): its signal, and no other
    submitit_handler = object.__new__(SignalHandler)
    previous = signal.signal(signal.SIGUSR2, submitit_handler.checkpoint_and_try_requeue)
    try:
        assert preemption_signal("") == preemption_signal("SIGUSR2") == signal.SIGUSR2
        with pytest.raises(ValueError, match="this submitit job is warned by SIGUSR2"):
            preemption_signal("SIGTERM")
    finally:
        signal.signal(signal.SIGUSR2, previous)


class _RecordingSubmititHandler(SignalHandler):
    """submitit's handler class, recording the requeue it is asked for instead of requeueing."""

    def __init__(self):
        self.calls: list[int] = []

    def checkpoint_and_try_requeue(self, signum, frame=None) -> None:
        self.calls.append(signum)


def test_the_requeue_goes_through_submitits_handler_once_after_the_stop():
    assert requeue_submitit_job(5) is None  # not a submitit job: the checkpoint is there, nothing to requeue
    handler = _RecordingSubmititHandler()
    previous = signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
    try:
        with stop_requests(signal.SIGUSR2):  # the job's own context, as in pretrain_entry
            os.kill(os.getpid(), signal.SIGUSR2)
            assert handler.calls == []  # the signal only asked for a stop
        with pytest.raises(SystemExit) as exited:
            requeue_submitit_job(5)  # process 0: submitit's handler, called once outside the signal
        assert exited.value.code == 0 and handler.calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
