#!/usr/bin/env python
"""The data side at ImageNet scale: corpus listing, index, loader start-up, worker memory, throughput.

    python tools/benchmarks/bench_data_scale.py --num-images 1281167 --workdir /tmp/data_scale

Builds (or reuses) under ``--workdir`` a synthetic corpus of N images laid out like ImageNet's ``train/``
(1300-image class folders of hard links to a few dozen ImageNet-sized JPEGs cut from real photos; ext4
allows 65,000 links per file) and a compact proposal store with 30 boxes per image, then measures in a
fresh process:

* ``list_s``: one walk of the corpus tree (``list_images``);
* ``index_write_s`` / ``index_s``: the first run's listing + writing of the corpus index, and reading it back;
* ``build_s``: ``build_pretrain_train_loader`` with the index cached (records, proposal coverage check);
* ``startup_s``: everything a rank does before its first batch: config set-up (which counts the images for
  an epoch-based schedule) + ``build_s``;
* ``first_batch_s``: from ``iter(loader)`` to the first batch (worker start-up included);
* ``worker_uss_mib_full_pass``: unique set size (private memory) of a process forked from the trainer, as
  a DataLoader worker is, after it has read every record and looked its key up in the proposals (one
  epoch's worth of record accesses);
* ``samples_per_s``: loader throughput over ``--batches`` batches after the first.

Prints one JSON line. ``--keep`` leaves the corpus for another run; otherwise the workdir is deleted.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_like import imagenet_sized_jpegs, random_proposals  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
IMAGES_PER_CLASS = 1300
NUM_SOURCES = 48
BOXES_PER_IMAGE = 30
CORPUS_VERSION = 1


def class_name(index: int) -> str:
    return f"n{index:08d}"


def build_corpus(workdir: Path, num_images: int) -> tuple[Path, Path]:
    """The image tree and the proposal store under ``workdir`` (reused when a previous run built the same)."""
    root, store = workdir / "train", workdir / "proposals_store"
    marker = workdir / "corpus.json"
    expected = {"version": CORPUS_VERSION, "num_images": num_images, "sources": NUM_SOURCES}
    if marker.is_file() and json.loads(marker.read_text()) == expected:
        return root, store
    from PIL import Image

    from soco_proposals.store import write_store

    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    sources_dir = workdir / "sources"
    sources_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources, source_boxes = [], []
    for index, jpeg in enumerate(imagenet_sized_jpegs(NUM_SOURCES)):
        path = sources_dir / f"source_{index:03d}.JPEG"
        path.write_bytes(jpeg)
        sources.append(path)
        with Image.open(path) as image:
            source_boxes.append(random_proposals(*image.size, BOXES_PER_IMAGE, rng))
    proposals = {}
    for class_index in range(math.ceil(num_images / IMAGES_PER_CLASS)):
        folder = root / class_name(class_index)
        folder.mkdir(parents=True)
        first = class_index * IMAGES_PER_CLASS
        for image_index in range(first, min(first + IMAGES_PER_CLASS, num_images)):
            key = f"{class_name(class_index)}_{image_index}"
            os.link(sources[image_index % NUM_SOURCES], folder / f"{key}.JPEG")
            proposals[key] = source_boxes[image_index % NUM_SOURCES]
    write_store(store, proposals, metadata={"synthetic": True})
    marker.write_text(json.dumps(expected))
    return root, store


def unique_set_size_mib(pid: int | str = "self") -> float:
    """Private (unshared) memory of a process: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024


def resident_set_size_mib() -> float:
    """Resident memory of this process (VmRSS), MiB; pages shared with its forked workers included."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _touch_every_record(dataset, connection) -> None:
    """In a forked process: read every record and look its key up in the proposals, then report the USS."""
    records, proposals = dataset.records, dataset.proposals
    found = 0
    for index in range(len(records)):
        record = records[index]
        found += proposals is not None and record.key in proposals
        len(record.path)
    connection.send((unique_set_size_mib(), found))
    connection.close()


def worker_uss_after_full_pass(dataset) -> tuple[float, int]:
    """USS (MiB) of a process forked from this one after touching every record; and the proposals found."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_touch_every_record, args=(dataset, sender))
    process.start()
    uss, found = receiver.recv()
    process.join()
    return uss, found


def measure(args: argparse.Namespace) -> dict:
    import torch

    from soco.data.build import build_pretrain_train_loader
    from soco.engine.pretrain import load_pretrain_cfg, setup_pretrain_cfg
    from soco_proposals.corpus_index import read_corpus_index, write_corpus_index
    from soco_proposals.image_list import list_images

    torch.set_num_threads(1)
    root, store = Path(args.root), Path(args.store)
    result: dict = {"num_images": args.num_images}

    start = time.perf_counter()
    listed = list_images(root)
    result["list_s"] = time.perf_counter() - start
    del listed

    index = Path(args.workdir) / "corpus_index.txt"
    index.unlink(missing_ok=True)
    start = time.perf_counter()
    write_corpus_index(root, index)
    result["index_write_s"] = time.perf_counter() - start
    start = time.perf_counter()
    read_corpus_index(index, root)
    result["index_s"] = time.perf_counter() - start

    opts = [
        "PRETRAIN.DATA.IMAGE_ROOT", str(root), "PRETRAIN.DATA.PROPOSALS", str(store),
        "PRETRAIN.DATA.CORPUS_INDEX", str(index),
        "SOLVER.IMS_PER_BATCH", str(args.batch_size), "DATALOADER.NUM_WORKERS", str(args.num_workers),
        "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(Path(args.workdir) / "output"),
    ]  # fmt: skip
    start = time.perf_counter()
    setup_pretrain_cfg(args.config, opts)  # counts the images: the config's schedule is in epochs
    setup_s = time.perf_counter() - start
    cfg = load_pretrain_cfg(args.config, opts)
    start = time.perf_counter()
    loader = build_pretrain_train_loader(cfg)
    result["build_s"] = time.perf_counter() - start
    result["startup_s"] = setup_s + result["build_s"]

    result["worker_uss_mib_full_pass"], found = worker_uss_after_full_pass(loader.dataset)
    result["records_with_proposals"] = found

    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    result["first_batch_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    result["samples_per_s"] = args.batches * args.batch_size / (time.perf_counter() - start)
    result["main_rss_mib"] = resident_set_size_mib()
    result.update(batch_size=args.batch_size, num_workers=args.num_workers, config=Path(args.config).name)
    result["load_average_1min"] = os.getloadavg()[0]
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--num-images", type=int, required=True, help="corpus size (ImageNet-1k train: 1281167)")
    add("--workdir", type=Path, required=True, help="folder for the corpus, the store and the index")
    add("--config", default=str(REPO / "soco" / "configs" / "SoCo_FPN_100ep.yaml"))
    add("--batch-size", type=int, default=32, help="batch of the loader (one rank)")
    add("--num-workers", type=int, default=2, help="DataLoader workers")
    add("--batches", type=int, default=8, help="batches timed for samples_per_s, after the first")
    add("--keep", action="store_true", help="keep the corpus in --workdir (reused by the next run)")
    add("--child", action="store_true", help=argparse.SUPPRESS)
    add("--root", help=argparse.SUPPRESS)
    add("--store", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        root, store = build_corpus(args.workdir, args.num_images)
        corpus_s = time.perf_counter() - start
        command = [
            sys.executable,
            __file__,
            "--child",
            *sys.argv[1:],
            "--root",
            str(root),
            "--store",
            str(store),
        ]
        child = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode != 0 or not lines:
            raise SystemExit(f"measurement failed:\n{child.stderr[-3000:]}")
        result = json.loads(lines[-1])
        result["corpus_build_s"] = corpus_s
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
