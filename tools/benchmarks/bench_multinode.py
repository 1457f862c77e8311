#!/usr/bin/env python
"""Scale-out shown, not assumed: M simulated machines x P processes equal one process with the same batch.

Each "machine" is a ``torchrun --nnodes M --node-rank r --nproc-per-node P`` agent on localhost (static
rendezvous at 127.0.0.1), whose P workers join one M x P process group through ``launch_from_args`` (what
``tools/pretrain_net.py`` does), gloo on the CPU. They pretrain the tiny SoCo FPN with ``naiveSyncBN``
everywhere, in float64 (the equality tests' trainer), on a tiny corpus of as many images as the global batch;
one process trains the same config and global batch. Printed, as markdown:

* per-iteration ``total_loss`` of both runs (rank 0 logs the all-process mean) and their largest relative
  difference; the largest relative difference of any final weight (the ``running_var`` buffers of
  Detectron2's NaiveSyncBatchNorm are left out and counted: synchronized, they take the biased variance);
* the data shards: the images each process's loader (rebuilt after training, as training built it) draws
  for each iteration, disjoint across processes and together the 1-process batch, which here is the whole
  corpus;
* wall times (process start-up included; the CPU is shared by all M x P processes).

The script exits with status 1 when a check fails.

    python tools/benchmarks/bench_multinode.py [--machines 4] [--procs-per-machine 2] [--iters 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from detectron2.engine import default_argument_parser
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the float64 trainer, tiny corpus and sync-BN rules of the tests
from distributed_testing import biased_running_stats  # noqa: E402
from pretrain_testing import run_pretraining, write_tiny_corpus  # noqa: E402

from soco.data.build import build_pretrain_train_loader  # noqa: E402
from soco.engine.distributed import add_launcher_arguments, launch_from_args  # noqa: E402
from soco.engine.pretrain import setup_pretrain_cfg  # noqa: E402
from soco.engine.trainer import PretrainTrainer  # noqa: E402

CONFIG = str(REPO / "soco" / "configs" / "tiny" / "SoCo_FPN.yaml")
SYNC_BN = [
    "MODEL.RESNETS.NORM", "naiveSyncBN", "MODEL.FPN.NORM", "naiveSyncBN",
    "MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN", "SOCO.HEAD.MLP_NORM", "naiveSyncBN",
]  # fmt: skip
#: float64 runs that differ only in the order of their sums agree to rounding: the 2-process equality
#: tests' tolerance, |multi - single| <= ATOL + RTOL * |single|
RTOL, ATOL = 1e-9, 1e-11


def drawn_images(opts: list[str], batches: int) -> list[list[int]]:
    """The corpus indices of the images this process draws in each of the first ``batches`` batches."""
    cfg = setup_pretrain_cfg(CONFIG, opts + ["MODEL.DEVICE", "cpu"])
    loader = iter(build_pretrain_train_loader(cfg))
    return [next(loader)["image_index"].tolist() for _ in range(batches)]


def train_and_record(args: argparse.Namespace) -> None:
    """One process of the simulated job (or the 1-process run): train, then save what is compared."""
    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    trainer, scalars = run_pretraining(args.config_file, run_dir, args.opts, float64=True)
    # total_loss: on rank 0 only (Detectron2 stores the all-process mean there)
    result = {"total_loss": scalars["total_loss"], "drawn": drawn_images(args.opts, trainer.max_iter)}
    torch.save(result, run_dir / f"result.rank{comm.get_rank()}.pt")


def run_machines(machines: int, per_machine: int, run_dir: Path, opts: list[str]) -> float:
    """Start ``machines`` torchrun agents of ``per_machine`` workers each on localhost; wall seconds."""
    port = _find_free_port()
    start = time.perf_counter()
    agents, logs = [], [open(run_dir.parent / f"machine{m}.log", "w") for m in range(machines)]  # noqa: SIM115
    try:
        for machine, log in enumerate(logs):
            command = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", str(machines), "--node-rank",
                str(machine), "--nproc-per-node", str(per_machine), "--master-addr", "127.0.0.1",
                "--master-port", str(port), __file__, "--worker", "--run-dir", str(run_dir),
                "--config-file", CONFIG, *opts,
            ]  # fmt: skip
            agents.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        failed = [machine for machine, agent in enumerate(agents) if agent.wait() != 0]
    finally:
        for log in logs:
            log.close()
    if failed:
        raise RuntimeError(f"simulated machines {failed} failed: see {run_dir.parent}/machine<r>.log")
    return time.perf_counter() - start


def _tolerance_used(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """The largest |actual - expected| and the largest fraction of the tolerance it uses (<= 1: equal)."""
    difference = (actual.double() - expected.double()).abs()
    if not difference.numel():
        return 0.0, 0.0
    return float(difference.max()), float((difference / (ATOL + RTOL * expected.double().abs())).max())


def compare(single: Path, multi: Path, world_size: int, global_batch: int) -> tuple[list[str], bool]:
    """Markdown lines comparing the two runs, and whether every check passed."""
    one = torch.load(single / "result.rank0.pt")
    ranks = [torch.load(multi / f"result.rank{rank}.pt") for rank in range(world_size)]
    losses_one, losses_multi = one["total_loss"], ranks[0]["total_loss"]
    header = f"| iteration | total_loss, 1 process | total_loss, {world_size} processes | relative diff. |"
    lines = [header, "|---:|---:|---:|---:|"]
    loss_diffs = []
    for iteration, value in losses_one.items():
        other = losses_multi.get(iteration, float("nan"))  # a missing iteration fails the comparison
        loss_diffs.append(_tolerance_used(*torch.tensor([other, value], dtype=torch.float64)))
        lines.append(f"| {iteration} | {value:.15f} | {other:.15f} | {abs(other - value) / abs(value):.1e} |")
    same_iterations = losses_multi.keys() == losses_one.keys()

    weights_one = torch.load(single / "model_final.pth", map_location="cpu")["model"]
    weights_multi = torch.load(multi / "model_final.pth", map_location="cpu")["model"]
    skip = biased_running_stats(_sync_bn_model()) & weights_one.keys()
    compared = [key for key in weights_one if key not in skip and weights_one[key].is_floating_point()]
    weight_diffs = [_tolerance_used(weights_multi[key], weights_one[key]) for key in compared]
    weight_diff, weight_share = max(d for d, _ in weight_diffs), max(share for _, share in weight_diffs)
    loss_diff, loss_share = max(d for d, _ in loss_diffs), max(share for _, share in loss_diffs)
    same_keys = weights_multi.keys() == weights_one.keys()

    shards_ok = True
    for iteration, batch in enumerate(one["drawn"]):
        per_rank = [rank["drawn"][iteration] for rank in ranks]
        union = sorted(index for shard in per_rank for index in shard)
        shards_ok &= union == sorted(batch) and len(set(union)) == len(union) == global_batch
    covering = all(sorted(batch) == list(range(global_batch)) for batch in one["drawn"])

    passed = same_iterations and same_keys and shards_ok and covering
    passed &= loss_share <= 1 and weight_share <= 1
    lines += [
        "",
        f"- total_loss: largest difference {loss_diff:.1e} over {len(loss_diffs)} iterations, "
        f"{loss_share:.1e} of the tolerance {ATOL:g} + {RTOL:g}·|value| (the equality tests')",
        f"- final weights: largest difference {weight_diff:.1e}, {weight_share:.1e} of the same tolerance, "
        f"over {len(compared)} tensors "
        f"({sum(key.endswith('running_var') for key in skip)} running_var buffers of NaiveSyncBatchNorm left "
        "out: synchronized, they take the biased variance)",
        f"- data (each process's training loader rebuilt after training and drawn again): in every "
        f"iteration the {world_size} processes drew disjoint shards "
        f"({global_batch // world_size} image(s) each) that together are the 1-process batch: "
        f"{'yes' if shards_ok else 'NO'}; each batch is the whole {global_batch}-image corpus: "
        f"{'yes' if covering else 'NO'}",
        f"- verdict: {'equal' if passed else 'DIFFERENT'}",
    ]
    return lines, passed


def _sync_bn_model() -> torch.nn.Module:
    """The model of the compared config (for the module types behind its weight names)."""
    cfg = setup_pretrain_cfg(CONFIG, SYNC_BN + ["MODEL.DEVICE", "cpu"], world_size=1)
    return PretrainTrainer.build_model(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--procs-per-machine", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    world_size = args.machines * args.procs_per_machine
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soco_bench_multinode_"))
    corpus = write_tiny_corpus(workdir / "corpus", count=world_size)
    opts = corpus + SYNC_BN + ["SOLVER.IMS_PER_BATCH", str(world_size), "SOLVER.MAX_ITER", str(args.iters)]
    opts += ["SOLVER.WARMUP_ITERS", "1"]

    single = workdir / "one"
    start = time.perf_counter()
    train_and_record(argparse.Namespace(config_file=CONFIG, opts=opts, run_dir=str(single)))
    single_s = time.perf_counter() - start
    multi = workdir / "multi"
    multi.mkdir(parents=True, exist_ok=True)
    multi_s = run_machines(args.machines, args.procs_per_machine, multi, opts)

    lines, passed = compare(single, multi, world_size, global_batch=world_size)
    print(
        f"Tiny SoCo FPN, naiveSyncBN, float64, global batch {world_size}, {args.iters} iterations: "
        f"{args.machines} machines x {args.procs_per_machine} processes (torchrun, static rendezvous on "
        f"localhost, gloo) against 1 process. Wall time {multi_s:.0f} s against {single_s:.0f} s "
        "(start-up included, all processes on this machine's cores).\n"
    )
    print("\n".join(lines))
    if not passed:
        sys.exit(1)


def worker() -> None:
    """A process started by torchrun: join the job like ``tools/pretrain_net.py``, then train."""
    parser = default_argument_parser()
    add_launcher_arguments(parser)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()
    launch_from_args(train_and_record, args, parser)


if __name__ == "__main__":
    worker() if "--worker" in sys.argv[1:] else main()
