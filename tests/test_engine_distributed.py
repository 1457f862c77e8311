"""soco.engine.distributed: which launcher started this process, the backend, the process groups' lifetime."""

from __future__ import annotations

import argparse
import gc
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from distributed_testing import run_distributed

from soco.engine import distributed
from soco.engine.distributed import (
    JobEnvironment,
    add_launcher_arguments,
    config_device,
    explicit_launch_options,
    job_environment,
    launch_from_args,
    launch_processes,
    process_group_backend,
    release_process_group,
)

REPO = Path(__file__).resolve().parents[1]
TINY_FPN = str(REPO / "soco" / "configs" / "tiny" / "SoCo_FPN.yaml")
TORCHRUN = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def _torchrun(rank: int, world: int, local_rank: int, local_world: int, **extra: str) -> dict[str, str]:
    values = {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": local_world}
    return {**TORCHRUN, **{name: str(value) for name, value in values.items()}, **extra}


def test_no_launcher_variables_means_no_torchrun_job():
    assert job_environment({}) is None
    assert job_environment({"LOCAL_RANK": "0", "MASTER_PORT": "1"}) is None  # no RANK nor WORLD_SIZE


def test_torchrun_variables_give_the_process_its_place():
    # node 1 of 4 with 2 processes each: global ranks 2, 3
    env = _torchrun(3, 8, 1, 2, GROUP_RANK="1")
    assert job_environment(env) == JobEnvironment(rank=3, world_size=8, local_rank=1, local_world_size=2,
                                                  machine_rank=1)  # fmt: skip
    assert job_environment(env).num_machines == 4
    # a PyTorchJob without torchrun: one process per pod, the machine's rank is the process's
    assert job_environment({**TORCHRUN, "RANK": "2", "WORLD_SIZE": "3"}) == JobEnvironment(2, 3, 0, 1, 2)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "0"}, r"without \['WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'\]"),
        ({**TORCHRUN, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "only one of LOCAL_RANK"),
        ({**TORCHRUN, "RANK": "zero", "WORLD_SIZE": "2"}, r"must be integers: \{'RANK': 'zero'"),
        (_torchrun(2, 2, 0, 1), "out of range: RANK=2 WORLD_SIZE=2"),
        (_torchrun(1, 3, 1, 2), "every machine must run LOCAL_WORLD_SIZE processes"),  # 2 + 1 processes
        (_torchrun(1, 4, 1, 2, GROUP_RANK="1"), "GROUP_RANK=1: every machine"),  # rank 1 is on machine 0
    ],
)
def test_incomplete_or_inconsistent_variables_are_refused(env, message):
    with pytest.raises(ValueError, match=message):
        job_environment(env)


def test_launch_options_given_on_the_command_line_are_found_whatever_their_value():
    parser = default_argument_parser()
    assert explicit_launch_options(parser, ["--config-file", "x.yaml", "OUTPUT_DIR", "out"]) == []
    given = ["--num-gpus", "1", "--config-file", "x.yaml", "--dist-url=auto", "--machine-r", "0"]
    assert explicit_launch_options(parser, given) == ["--num-gpus", "--machine-rank", "--dist-url"]
    assert parser.get_default("num_gpus") == 1 and parser.parse_args([]).machine_rank == 0  # restored


def test_the_device_is_read_from_the_config_its_bases_and_the_overrides(tmp_path):
    assert config_device(TINY_FPN, []) == "cpu"  # the tiny config sets it
    assert config_device(str(REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"), []) == "cuda"  # default
    assert config_device(TINY_FPN, ["MODEL.DEVICE", "cuda:1", "MODEL.DEVICE", "cuda:0"]) == "cuda:0"
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text(f'_BASE_: "{TINY_FPN}"\nSOLVER:\n  MAX_ITER: 2\n')
    assert config_device(str(leaf), ["SOLVER.MAX_ITER", "3"]) == "cpu"


def test_the_backend_follows_the_device_not_the_machine():
    assert process_group_backend("cpu") == "gloo"
    assert process_group_backend("cuda") == process_group_backend(torch.device("cuda", 1)) == "nccl"


def test_a_cpu_run_on_a_gpu_machine_gets_gloo(monkeypatch):
    """Detectron2's launch picks NCCL whenever the machine has a GPU, even for ``MODEL.DEVICE cpu``."""
    started = []

    def start_processes(worker, nprocs: int, args: tuple, daemon: bool) -> None:
        started.append((nprocs, args[2]))  # (main_func, its args, backend, ...)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.mp, "start_processes", start_processes)
    launch_processes(_refuse, 2, args=(None,), device="cpu")
    launch_processes(_refuse, 4, num_machines=2, dist_url="tcp://node0:1234", args=(None,), device="cpu")
    launch_processes(_refuse, 2, args=(None,), device="cuda")
    assert started == [(2, "gloo"), (4, "gloo"), (2, "nccl")]


def _refuse(args: argparse.Namespace) -> None:
    pytest.fail("main ran although the launch was refused")


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    parser = default_argument_parser()
    add_launcher_arguments(parser)
    return parser


def test_launch_flags_inside_a_torchrun_job_are_refused(parser, monkeypatch):
    for key, value in _torchrun(0, 2, 0, 2).items():
        monkeypatch.setenv(key, value)
    argv = ["--config-file", TINY_FPN, "--num-gpus", "2"]
    with pytest.raises(
        ValueError, match=r"--num-gpus given inside a torchrun-style job \(RANK=0, WORLD_SIZE=2"
    ):
        launch_from_args(_refuse, parser.parse_args(argv), parser, argv)
    argv = ["--local-rank=1", "--config-file", TINY_FPN]  # torch.distributed.launch without --use-env
    with pytest.raises(ValueError, match="--local-rank 1 differs from LOCAL_RANK=0"):
        launch_from_args(_refuse, parser.parse_args(argv), parser, argv)


def test_a_local_rank_without_its_launcher_is_refused(parser, monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    argv = ["--local-rank", "0", "--config-file", TINY_FPN]
    with pytest.raises(ValueError, match="--local-rank 0 without RANK/WORLD_SIZE"):
        launch_from_args(_refuse, parser.parse_args(argv), parser, argv)


def test_a_torchrun_job_of_one_process_runs_main_here_with_the_launch_fields_set(parser, monkeypatch):
    for key, value in _torchrun(0, 1, 0, 1).items():
        monkeypatch.setenv(key, value)
    argv = ["--config-file", TINY_FPN]
    args = launch_from_args(lambda args: args, parser.parse_args(argv), parser, argv)
    assert (args.num_gpus, args.num_machines, args.machine_rank, args.dist_url) == (1, 1, 0, "env://")
    assert not dist.is_initialized()


def _record_groups(out: str) -> None:
    rank = comm.get_rank()
    groups = [dist.get_backend(), comm.get_world_size(), comm.get_local_rank(), comm.get_local_size()]
    torch.save(groups, Path(out) / f"groups.rank{rank}.pt")


def test_spawned_processes_get_the_backend_and_the_per_machine_group(tmp_path):
    launch_processes(_record_groups, 2, args=(str(tmp_path),), device="cpu")
    assert [torch.load(tmp_path / f"groups.rank{rank}.pt") for rank in range(2)] == [
        ["gloo", 2, 0, 2],
        ["gloo", 2, 1, 2],
    ]


def _release_drops_every_group() -> None:
    comm.create_local_process_group(2)
    comm.all_gather(dist.get_rank())  # caches Detectron2's gloo group: the world group here
    cycle = [torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))]
    cycle.append(cycle)  # a finished trainer's DDP model in a reference cycle holds the group too
    del cycle
    held = [weakref.ref(dist.group.WORLD), weakref.ref(comm.get_local_process_group())]
    release_process_group()
    gc.collect()
    assert not dist.is_initialized()
    assert [group() for group in held] == [None, None], "a group outlived release_process_group"


def test_release_leaves_no_group_alive_for_interpreter_shutdown(tmp_path):
    """The cause of random SIGABRTs at exit ("terminate called without an active exception"): a group
    that Detectron2's caches keep alive is torn down during interpreter shutdown, when its gloo thread
    can no longer take the GIL to free a finished collective's tensors."""
    run_distributed(_release_drops_every_group, tmp_path)


class _ParametersOn(torch.nn.Module):
    """A module whose parameters report ``device`` (a CUDA device without a GPU)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device

    def parameters(self, recurse: bool = True):
        return iter([argparse.Namespace(device=self.device)])


@pytest.mark.parametrize(
    "device, expected",
    [(torch.device("cuda", 0), [0]), (torch.device("cuda", 3), [3]), (torch.device("cpu"), None)],
)
def test_ddp_gets_the_models_own_gpu_not_the_local_rank(device, expected, monkeypatch):
    calls = []
    record = lambda model, **kwargs: calls.append(kwargs) or model  # noqa: E731
    monkeypatch.setattr(distributed, "create_ddp_model", record)
    # torchrun --virtual-local-rank: every process has local rank 0, whatever GPU its model is on
    monkeypatch.setattr(comm, "get_local_rank", lambda: 0)
    distributed.wrap_ddp(_ParametersOn(device), find_unused_parameters=False)
    assert calls == [{"device_ids": expected, "broadcast_buffers": False, "find_unused_parameters": False}]
