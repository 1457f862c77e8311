#!/usr/bin/env python
"""`make bench`: run every benchmark and write their tables, with the machine's details, to one markdown file.

    python tools/benchmarks/run_all.py [--output docs/BENCHMARKS.md] [--quick]

Benchmarks are scripts that print numbers (never timed tests): run them on an otherwise idle machine.
Sections of the existing file that carry the line ``<!-- recorded by hand -->`` (measurements this script
cannot repeat, such as a before/after comparison with older code) are kept, after the generated ones.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
KEEP_MARKER = "<!-- recorded by hand -->"


def machine_details() -> str:
    """One line naming the CPU, cores, memory, GPU (if any) and software versions."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {total_kib / 2**20:.0f} GiB RAM"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    software = f"Python {platform.python_version()}, torch {torch.__version__}"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {gpu}; {software}"


def run_bench_script(argv: list[str]) -> tuple[str, float]:
    """Run one benchmark script; returns its standard output and its wall time."""
    start = datetime.datetime.now()
    result = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    seconds = (datetime.datetime.now() - start).total_seconds()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip(), seconds


def kept_sections(path: Path) -> list[str]:
    """The ``## `` sections of ``path`` that contain :data:`KEEP_MARKER`, verbatim."""
    if not path.is_file():
        return []
    sections = path.read_text().split("\n## ")[1:]
    return [f"## {section.rstrip()}" for section in sections if KEEP_MARKER in section]


# Benchmark scripts in tools/benchmarks that `make bench` does not run, and why (tests/test_bench_data.py
# checks that every bench_*.py is either run or named here).
NOT_RUN = {
    "bench_linear.py": "needs the demo's probe set and pretrained weights (see docs/LINEAR_EVAL.md)",
}


def benchmark_commands(quick: bool) -> dict[str, list[str]]:
    """Section title -> the benchmark script and its arguments (relative to the repository), in run order."""
    iters = ["--iters", "2", "--warmup", "1"] if quick else ["--iters", "5"]
    full_size = [f"soco/configs/{name}.yaml" for name in ("SoCo_FPN_100ep", "SoCo_C4_100ep", "MoCoV2_200ep")]
    if not quick:
        full_size += ["soco/configs/SoCo_FPN_Star_400ep.yaml", "soco/configs/DenseCL_200ep.yaml"]
    benchmarks = {
        "Selective-search proposals (one core)": [
            "tools/benchmarks/bench_proposals.py",
            *(["--max-images", "2", "--no-package"] if quick else ["--repeats", "2"]),
        ],
        "Data cost per sample (one core)": [
            "tools/benchmarks/bench_views.py",
            *(["--images", "4", "--rounds", "1", "--samples", "4"] if quick else []),
        ],
        "Data pipeline at scale (synthetic ImageNet-like corpus)": [
            "tools/benchmarks/bench_data_scale.py",
            "--num-images",
            "13000" if quick else "1281167",
            "--workdir",
            str(Path(tempfile.gettempdir()) / "soco_bench_data_scale"),
        ],
        "Pretraining throughput, tiny configs (CPU, 2 data workers)": [
            "tools/benchmarks/bench_pretrain.py",
            "--num-workers",
            "2",
            *iters,
        ],
        "Pretraining throughput, full-size ResNet-50 configs (CPU, batch 4)": [
            "tools/benchmarks/bench_pretrain.py",
            "--configs",
            *full_size,
            "--batch-sizes",
            "4",
            "--num-workers",
            "2",
            "--iters",
            "2",
            "--warmup",
            "1",
        ],
        # CPU time on one thread, the head timed alone: comparable even on a machine other jobs share
        "SoCo FPN head cost per SOCO.HEAD_BATCHING (CPU time, one thread, batch 4)": [
            "tools/benchmarks/bench_pretrain.py",
            "--configs",
            "soco/configs/SoCo_FPN_100ep.yaml",
            *([] if quick else ["soco/configs/SoCo_FPN_Star_400ep.yaml"]),
            "--batch-sizes",
            "4",
            "--num-workers",
            "2",
            "--head-cost",
            "--no-throughput",
            "--threads",
            "1",
            "--cpu-time",
            *(["--iters", "1", "--warmup", "1"] if quick else ["--iters", "3", "--warmup", "1"]),
        ],
        "Cost of one probe evaluation (demo-sized probe sets, tiny configs)": [
            "tools/benchmarks/bench_probes.py",
            *(["--rounds", "1", "--configs", "SoCo_FPN.yaml"] if quick else []),
        ],
        # --quick and the full size keep their runs in separate folders (bench_transfer.py's defaults)
        "Transfer benchmark on the demo's data (mean ± std [95 % interval] over seeds; the same parts frozen "
        "for every init, and full fine-tuning)": [
            "tools/benchmarks/bench_transfer.py",
            *(["--quick"] if quick else ["--seeds", "3"]),
        ],
        "Scale-out: simulated machines x 2 processes (torchrun on localhost) against 1 process": [
            "tools/benchmarks/bench_multinode.py",
            *(["--machines", "2", "--iters", "2"] if quick else []),
        ],
        "LARS step, foreach kernels vs per parameter (SoCo R50-FPN parameters, 1 CPU thread)": [
            "tools/benchmarks/bench_lars.py",
            "--threads",
            "1",
            *(["--steps", "5"] if quick else []),
        ],
        "Pre-emption cost: stop check after each step (gloo, 2 processes) and checkpoint save": [
            "tools/benchmarks/bench_preemption.py",
            *(
                ["--iterations", "100", "--saves", "1", "--config", "soco/configs/tiny/SoCo_FPN.yaml"]
                if quick
                else []
            ),
        ],
    }
    return benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="fewer images and iterations")
    args = parser.parse_args()
    benchmarks = benchmark_commands(args.quick)
    for script, reason in NOT_RUN.items():
        print(f"not run: {script} ({reason})", flush=True)
    sections = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today().isoformat()} by `make bench` (`tools/benchmarks/run_all.py`) on: "
        f"{machine_details()}.",
    ]
    kept = kept_sections(args.output)
    for title, argv in benchmarks.items():
        print(f"running {' '.join(argv)} ...", flush=True)
        output, seconds = run_bench_script(argv)
        sections += ["", f"## {title}", "", f"`python {' '.join(argv)}` ({seconds:.0f} s)", "", output]
    for section in kept:
        sections += ["", section]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(sections) + "\n")
    print("\n".join(sections))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
