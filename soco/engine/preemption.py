"""Pre-emption without loss: the scheduler's warning signal becomes a checkpoint at an iteration boundary.

A scheduler warns before it stops a job: SLURM through submitit sends SIGUSR2 (``SUBMITIT_PREEMPT_SIGNAL``)
``signal_delay_s`` before the time limit or on pre-emption; torchrun forwards SIGTERM, which Kubernetes
sends. Saving from inside the handler can store a state taken mid-step or hang the process
(Lightning#21406), and submitit's own handler does it on process 0 only while the others train on. Here:

1. the handler (:func:`stop_requests`) only records the signal; DataLoader workers ignore it
   (``soco.data.build.ignore_stop_signals``);
2. after every step :class:`PreemptionHook` all-reduces the flag (MAX) on a CPU gloo group, so every
   process stops after the same iteration without waiting on the GPU stream;
3. process 0 writes that iteration's checkpoint (``model_XXXXXXX.pth`` and ``last_checkpoint``, each to a
   temporary name first: :class:`soco.engine.trainer.AtomicCheckpointer`); a barrier; then the trainer
   returns with ``preempted_at`` set instead of finishing;
4. the launcher requeues once and every process exits cleanly: in a submitit job process 0 runs
   submitit's requeue (:func:`requeue_submitit_job`, after the checkpoint exists); under torchrun or
   ``tools/pretrain_net.py`` every process exits with status 0 and the scheduler restarts the job. The
   restarted run (``--resume``) continues at the next iteration.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import submitit
import torch
import torch.distributed as dist
from detectron2.engine import HookBase
from detectron2.utils import comm
from submitit.core.job_environment import SignalHandler

logger = logging.getLogger(__name__)

_requests: list[int] = []  # the stop signals received since the outermost stop_requests() began
_set_aside: dict[int, Any] = {}  # signal -> the handler the outermost stop_requests() replaced


def _record_stop_request(signum: int, frame: Any) -> None:
    """The signal handler: record the request, nothing else (the training loop acts on it)."""
    _requests.append(signum)


def stop_requested() -> bool:
    """Whether a stop signal arrived in this process since :func:`stop_requests` began listening."""
    return bool(_requests)


@contextmanager
def stop_requests(signum: int) -> Iterator[None]:
    """While inside, ``signum`` only records a stop request (:func:`stop_requested`); the handler it
    replaced comes back on exit. Nested on the same signal, the inner one keeps the outer one's requests.

    Signal handlers can only be set from the main thread; elsewhere this logs that the signal is not
    handled and changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        name = signal.Signals(signum).name
        logger.warning("not on the main thread: %s is not turned into a stop request", name)
        yield
        return
    previous = signal.signal(signum, _record_stop_request)
    outermost = previous is not _record_stop_request
    if outermost:
        _requests.clear()
        _set_aside[signum] = previous
    try:
        yield
    finally:
        signal.signal(signum, previous)
        if outermost:
            del _set_aside[signum]


def _submitit_handler() -> tuple[signal.Signals, SignalHandler] | None:
    """submitit's pre-emption signal and the handler object it installed at the job's start (kept aside
    by :func:`stop_requests`), or None when this process does not run a submitit job."""
    signum = getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}", None)
    if signum is None:
        return None
    handler = _set_aside.get(signum, signal.getsignal(signum))
    owner = getattr(handler, "__self__", None)
    return (signal.Signals(signum), owner) if isinstance(owner, SignalHandler) else None


@contextmanager
def submitit_stop_requests() -> Iterator[None]:
    """In a submitit job, :func:`stop_requests` on its pre-emption signal (from the job's start, so that a
    warning during set-up waits for the first iteration boundary too); elsewhere nothing changes."""
    submitit_job = _submitit_handler()
    if submitit_job is None:
        yield
        return
    with stop_requests(submitit_job[0]):
        yield


def preemption_signal(name: str) -> signal.Signals:
    """The signal of ``SOLVER.PREEMPTION_SIGNAL`` (``name``): "" is the launcher's warning, submitit's
    (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise) in a submitit job, SIGTERM elsewhere.

    In a submitit job another signal is refused: SLURM would send submitit's, whose handler saves on one
    process only.
    """
    submitit_job = _submitit_handler()
    if not name:
        return submitit_job[0] if submitit_job else signal.SIGTERM
    full_name = name if name.startswith("SIG") else f"SIG{name}"
    if full_name not in signal.Signals.__members__:
        raise ValueError(f"SOLVER.PREEMPTION_SIGNAL={name!r} is not a signal name (e.g. SIGUSR2, SIGTERM)")
    chosen = signal.Signals[full_name]
    if submitit_job and chosen != submitit_job[0]:
        raise ValueError(
            f"SOLVER.PREEMPTION_SIGNAL={name!r}, but this submitit job is warned by {submitit_job[0].name} "
            "(SUBMITIT_PREEMPT_SIGNAL): set SOLVER.PREEMPTION_SIGNAL to it or leave it empty"
        )
    return chosen


class TrainingPreempted(BaseException):
    """Raised by :class:`PreemptionHook` on every process once a stop is agreed and the checkpoint of
    ``iteration`` (the last finished one) is on disk. A ``BaseException``, as ``KeyboardInterrupt``: it is
    a request to stop, not a failure, and Detectron2's loop logs every ``Exception`` as one."""

    def __init__(self, iteration: int):
        super().__init__(f"pre-empted after iteration {iteration}")
        self.iteration = iteration


def train_until_preempted(train: Callable[[], object], signum: int) -> int | None:
    """Run ``train()`` (a trainer's loop, :class:`PreemptionHook` registered) with ``signum`` recorded as a
    stop request (:func:`stop_requests`); the iteration a coordinated stop ended after, or None when the
    loop finished."""
    with stop_requests(signum):
        try:
            train()
        except TrainingPreempted as stop:
            return stop.iteration
    return None


class PreemptionHook(HookBase):
    """Turn a stop request of any process into the same stop on all: agree (all-reduce on a gloo group),
    save the finished iteration on process 0, barrier, raise :class:`TrainingPreempted`.

    Register it last, so that a stopped iteration has run all its other hooks (writers, probes). A request
    agreed before the first step stops without saving (the state is the one the run started from); one
    at the last iteration is logged and the run finishes.
    """

    def __init__(self, checkpointer: Any, max_iter: int):
        self.checkpointer = checkpointer
        self.max_iter = max_iter
        self._group: Any = None

    def before_train(self) -> None:
        if comm.get_world_size() > 1:  # every process builds the trainer's hooks, so every one gets here
            self._group = dist.new_group(backend="gloo")
        if self._agreed():
            logger.warning("stop requested before the first step: stopped at iteration %d", self.trainer.iter)
            raise TrainingPreempted(self.trainer.iter - 1)

    def _agreed(self) -> bool:
        """Whether any process received a stop signal (the same answer on all)."""
        flag = torch.tensor([int(stop_requested())], dtype=torch.int32)
        if self._group is not None:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())

    def after_step(self) -> None:
        if not self._agreed():
            return
        iteration = self.trainer.iter
        if iteration + 1 >= self.max_iter:
            logger.warning("stop requested at the last iteration %d: the run finishes", iteration)
            return
        if comm.is_main_process():
            name = f"model_{iteration:07d}"
            if not self.checkpointer.get_checkpoint_file().endswith(f"{name}.pth"):  # not saved periodically
                self.checkpointer.save(name, iteration=iteration)
        if self._group is not None:
            dist.barrier(group=self._group)
        logger.warning("stop requested: every process stops after iteration %d (saved)", iteration)
        raise TrainingPreempted(iteration)

    def after_train(self) -> None:
        if self._group is not None:
            dist.destroy_process_group(self._group)
            self._group = None


def requeue_submitit_job(iteration: int) -> None:
    """After a coordinated stop in a submitit job: process 0 runs submitit's handler, outside any signal
    context (submitit's ``checkpoint()`` pickles the same job again, it requeues the job once and exits);
    the others exit with status 0. Outside a submitit job (or on submitit's in-process "debug" cluster,
    which installs no handler) it only logs that the checkpoint is there to resume from.
    """
    submitit_job = _submitit_handler()
    if submitit_job is None:
        logger.warning("pre-empted after iteration %d; no submitit job to requeue: resume it", iteration)
        return
    signum, handler = submitit_job
    if comm.is_main_process():
        handler.checkpoint_and_try_requeue(signum)  # requeues and exits (or raises: timed out too often)
    raise SystemExit(0)
