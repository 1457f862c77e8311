r"""Step 1: raw selective-search proposals for every image of a corpus (sharded, resumable).

Example (one machine of 4, 64 cores)::

    python selective_search/generate_imagenet_ss_proposals.py --image-root imagenet/train \
        --output proposals_raw --workers 64 --shard-id 0 --num-shards 4

Inside a SLURM job array (``sbatch --array=0-99``) the shard comes from SLURM_ARRAY_TASK_ID and the number
of shards from SLURM_ARRAY_TASK_COUNT unless given; ``tools/submit.py proposals`` does all of this for you.
"""

import argparse
import os

from soco_proposals.backends import PROPOSAL_BACKENDS
from soco_proposals.cli import setup_logging
from soco_proposals.cluster_jobs import shard_from_environment
from soco_proposals.generate import DEFAULT_CHUNK_SIZE, generate_shard


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image-root", required=True, help="ImageNet tree, folder of images, train_map.txt or train.zip"
    )
    parser.add_argument(
        "--corpus-index",
        default=None,
        help="the corpus index of --image-root (tools/build_corpus_index.py), read instead of listing it",
    )
    parser.add_argument("--output", required=True, help="output folder; each shard writes a subfolder")
    parser.add_argument("--backend", default="reference", choices=sorted(PROPOSAL_BACKENDS))
    parser.add_argument("--workers", type=int, default=_available_cores(), help="worker processes")
    parser.add_argument(
        "--shard-id", type=int, default=None, help="default: SLURM_ARRAY_TASK_ID in a job array, else 0"
    )
    parser.add_argument(
        "--num-shards", type=int, default=None, help="default: SLURM_ARRAY_TASK_COUNT in a job array, else 1"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        help="downscale the long side to this many pixels first (default: full resolution, "
        "as SoCo); boxes are mapped back to the original pixels",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="images per atomically written chunk (the unit of resume)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    setup_logging()
    try:
        shard_id, num_shards = shard_from_environment(args.shard_id, args.num_shards)
    except ValueError as error:
        parser.error(str(error))
    generate_shard(
        args.image_root,
        args.output,
        backend=args.backend,
        workers=args.workers,
        shard_id=shard_id,
        num_shards=num_shards,
        max_size=args.max_size,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        corpus_index=args.corpus_index,
    )


if __name__ == "__main__":
    main()
