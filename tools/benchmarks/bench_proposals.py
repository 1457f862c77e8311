"""Benchmark the proposal backends: s/image/core, boxes/image, recall of the reference boxes at IoU 0.7,
time against the Felzenszwalb floor and the ``selectivesearch`` package, projected ImageNet wall time.

Without ``--image-dir`` it uses scikit-image's sample photos (written to a temporary folder). Run it on
an idle machine; it uses one core::

    python tools/benchmarks/bench_proposals.py [--image-dir DIR] [--backends reference opencv-fast]
"""

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from soco_proposals.backends import PROPOSAL_BACKENDS
from soco_proposals.benchmark import (
    FELZENSZWALB_FLOOR,
    IMAGENET_MEAN_MEGAPIXELS,
    PACKAGE,
    benchmark,
    format_report,
)
from soco_proposals.generate import load_rgb_array
from soco_proposals.image_list import list_images

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "immunohistochemistry")


def write_sample_photos(folder: Path) -> Path:
    from skimage import data

    for name in SAMPLE_PHOTOS:
        image = getattr(data, name)()
        image = image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-dir", default=None, help="folder of images (default: scikit-image photos)")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument(
        "--backends", nargs="+", default=sorted(PROPOSAL_BACKENDS), choices=sorted(PROPOSAL_BACKENDS)
    )
    parser.add_argument("--no-package", action="store_true", help="skip the (slow) selectivesearch package")
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per image and method")
    parser.add_argument("--cores", type=int, default=64, help="cores for the projected wall time")
    parser.add_argument(
        "--target-mpx",
        type=float,
        default=IMAGENET_MEAN_MEGAPIXELS,
        help="mean image size (megapixels) the projection is also scaled to (default: ImageNet's)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.image_dir) if args.image_dir else write_sample_photos(Path(tmp))
        records = list_images(folder)[: args.max_images]
        images = {record.key: load_rgb_array(record.path)[0] for record in records}
    methods = [FELZENSZWALB_FLOOR] + ([] if args.no_package else [PACKAGE])
    methods += ["reference"] + [name for name in args.backends if name != "reference"]
    stats = benchmark(images, methods, repeats=args.repeats)
    print(format_report(stats, images, cores=args.cores, target_megapixels=args.target_mpx))


if __name__ == "__main__":
    main()
