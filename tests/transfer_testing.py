"""Format-faithful checkpoints of every release soco reads, and tiny fine-tuning models, for tests.

The official layouts are rebuilt in code around a real torchvision ResNet state dict, wrapped the way
each release wraps it (key names from baselines.md / soco.md); soco's own layout comes from
Detectron2's modules with the names of the PREAMBLE ("Pretraining model state_dict naming").
Every floating tensor is randomised so that a tensor loaded from the wrong key is noticed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone
from detectron2.modeling.roi_heads import FastRCNNConvFCHead
from PIL import Image, ImageDraw
from torch import nn

from soco.checkpoint import check_transfer, convert_checkpoint, detectron2_payload, save_pickle
from soco.detection import load_transfer_config
from soco.modeling.soco import build_res5_head

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "detectron2_configs"

# A ResNet-50 whose widths are 1/8 of the real one: bottleneck blocks like R50, tiny tensors.
TINY_R50 = [
    "MODEL.RESNETS.DEPTH", "50",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "32",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "16",
]  # fmt: skip


def randomized(state: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with every floating tensor drawn from U(0.5, 1.5) (integers kept)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=gen) + 0.5
        out[key] = value.clone()
    return out


def torchvision_resnet(depth: int = 50, seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict of ``torchvision.models.resnet{depth}`` (no download), randomised."""
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    return randomized(model.state_dict(), seed)


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _mlp(prefix: str, dims: tuple[int, ...], seed: int) -> dict[str, torch.Tensor]:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=False):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
    return _prefixed(prefix, randomized(nn.Sequential(*layers[:-1]).state_dict(), seed))


def moco_release(tv: Mapping[str, torch.Tensor]) -> dict:
    """``moco_v2_200ep_pretrain.pth.tar``: encoder_q / encoder_k with MLP ``fc.0``/``fc.2`` and the queue."""
    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    encoder = {**backbone, **_mlp("fc.", (2048, 2048, 128), seed=1)}
    state = {
        **_prefixed("module.encoder_q.", encoder),
        **_prefixed("module.encoder_k.", randomized(encoder, seed=2)),
        "module.queue": torch.randn(128, 64),
        "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    }
    return {
        "epoch": 200,
        "arch": "resnet50",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": []},
    }


def swav_release(tv: Mapping[str, torch.Tensor]) -> dict:
    """``swav_800ep_pretrain.pth.tar``: a bare ``module.*`` dict with projection head and prototypes."""
    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    return {
        **_prefixed("module.", backbone),
        **_mlp("module.projection_head.", (2048, 2048, 128), seed=3),
        "module.prototypes.weight": torch.randn(3000, 128),
    }


def densecl_extracted(tv: Mapping[str, torch.Tensor]) -> dict:
    """``densecl_r50_imagenet_200ep.pth``: the output of OpenSelfSup's extract_backbone_weights."""
    return {"state_dict": {k: v for k, v in tv.items() if not k.startswith("fc.")}, "author": "DenseCL"}


def densecl_raw(tv: Mapping[str, torch.Tensor]) -> dict:
    """OpenSelfSup ``epoch_200.pth``: encoder_q = (backbone, neck) aliased as backbone / neck, queues."""
    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    neck = {**_mlp("mlp.", (2048, 2048, 128), seed=4), **_mlp("mlp2.", (2048, 2048, 128), seed=5)}
    state = {
        **_prefixed("encoder_q.0.", backbone),
        **_prefixed("encoder_q.1.", neck),
        **_prefixed("encoder_k.0.", randomized(backbone, seed=6)),
        **_prefixed("encoder_k.1.", randomized(neck, seed=7)),
        **_prefixed("backbone.", backbone),
        **_prefixed("neck.", neck),
        "queue": torch.randn(128, 64),
        "queue_ptr": torch.zeros(1, dtype=torch.long),
        "queue2": torch.randn(128, 64),
        "queue2_ptr": torch.zeros(1, dtype=torch.long),
    }
    meta = {"epoch": 200, "iter": 1000, "mmcv_version": "0.4.3", "time": "Mon Jan  1 00:00:00 2021"}
    return {"meta": meta, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def _mmdet_conv_bn(prefix: str, c_out: int, c_in: int, k: int, seed: int) -> dict[str, torch.Tensor]:
    bn = randomized(nn.BatchNorm2d(c_out).state_dict(), seed)
    conv = torch.rand(c_out, c_in, k, k, generator=torch.Generator().manual_seed(seed)) + 0.5
    return {f"{prefix}conv.weight": conv, **_prefixed(f"{prefix}bn.", bn)}


def soco_official_release(tv: Mapping[str, torch.Tensor], fpn: bool) -> dict:
    """``ckpt_epoch_N.pth`` of the original SoCo: encoder (+ mmdet FPN neck and 4conv1fc head when
    ``fpn``), BYOL projector / predictor, momentum copies, an argparse ``opt`` and training state."""
    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    online = _prefixed("encoder.", backbone)
    if fpn:
        for i, c_in in enumerate((256, 512, 1024, 2048)):
            online.update(_mmdet_conv_bn(f"neck.lateral_convs.{i}.", 256, c_in, 1, seed=10 + i))
            online.update(_mmdet_conv_bn(f"neck.fpn_convs.{i}.", 256, 256, 3, seed=20 + i))
        for k in range(1, 5):
            conv_bn = _mmdet_conv_bn("", 256, 256, 3, seed=30 + k)
            online[f"head.conv{k}.weight"] = conv_bn["conv.weight"]
            online.update({f"head.bn{k}.{p[3:]}": v for p, v in conv_bn.items() if p.startswith("bn.")})
        online["head.fc1.weight"] = torch.rand(1024, 256 * 7 * 7) + 0.5
        online["head.fc1.bias"] = torch.rand(1024) + 0.5
    projector = _mlp("projector.", (1024 if fpn else 2048, 4096, 256), seed=40)
    predictor = _mlp("predictor.", (256, 4096, 256), seed=41)
    target = {re.sub(r"^(\w+)\.", r"\1_k.", k): v for k, v in {**online, **projector}.items()}
    model = _prefixed("module.", {**online, **projector, **predictor, **randomized(target, seed=42)})
    if not fpn:
        model["module.queue"] = torch.randn(256, 16)
    opt = argparse.Namespace(arch="resnet50", epochs=100, base_lr=1.0)
    return {"opt": opt, "model": model, "optimizer": {}, "scheduler": {}, "epoch": 100}


def tiny_cfg(extra: list[str] | None = None):
    """Detectron2 config of the tiny R50 used for soco-layout fixtures."""
    cfg = get_cfg()
    cfg.merge_from_list(TINY_R50 + ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.RESNETS.STRIDE_IN_1X1", "False"])
    cfg.merge_from_list(extra or [])
    return cfg


def _soco_checkpoint(
    online: dict[str, torch.Tensor], target_keys: tuple[str, ...], seed: int, randomize: bool = True
) -> dict:
    if randomize:
        online = randomized(online, seed)
    target = {f"target.{k}": v for k, v in randomized(online, seed + 1).items() if k.startswith(target_keys)}
    return {"model": {**online, **target}, "optimizer": {"state": {}}, "scheduler": {}, "iteration": 9}


def soco_fpn_checkpoint(seed: int = 100, randomize: bool = True) -> dict:
    """Our SoCo FPN pretraining checkpoint (tiny R50-FPN + 4conv1fc head + BYOL MLPs + target).

    ``randomize=False`` keeps Detectron2's initialisation, a sane starting point for fine-tuning.
    """
    stages = "['res2','res3','res4','res5']"
    cfg = tiny_cfg(
        ["MODEL.RESNETS.OUT_FEATURES", stages, "MODEL.FPN.IN_FEATURES", stages, "MODEL.FPN.NORM", "SyncBN"]
    )
    cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NUM_CONV", "4", "MODEL.ROI_BOX_HEAD.NUM_FC", "1"])
    cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NORM", "SyncBN"])
    backbone = build_resnet_fpn_backbone(cfg, ShapeSpec(channels=3))
    box_head = FastRCNNConvFCHead(cfg, ShapeSpec(channels=32, height=7, width=7))
    online = {
        **_prefixed("backbone.", backbone.state_dict()),
        **_prefixed("roi_heads.box_head.", box_head.state_dict()),
        **_mlp("projector.", (64, 128, 32), seed=seed),
        **_mlp("predictor.", (32, 128, 32), seed=seed),
    }
    return _soco_checkpoint(online, ("backbone.", "roi_heads.", "projector."), seed, randomize)


def soco_c4_checkpoint(seed: int = 200, randomize: bool = True) -> dict:
    """Our SoCo C4 pretraining checkpoint: backbone to res4, ``roi_heads.res5``, MLPs, target.

    ``randomize=False`` keeps Detectron2's initialisation, a sane starting point for fine-tuning.
    """
    cfg = tiny_cfg(["MODEL.RESNETS.OUT_FEATURES", "['res4']"])
    online = {
        **_prefixed("backbone.", build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict()),
        **_prefixed("roi_heads.res5.", build_res5_head(cfg)[0].state_dict()),
        **_mlp("projector.", (256, 128, 32), seed=seed),
        **_mlp("predictor.", (32, 128, 32), seed=seed),
    }
    return _soco_checkpoint(online, ("backbone.", "roi_heads.", "projector."), seed, randomize)


def image_level_checkpoint(seed: int = 300) -> dict:
    """Our MoCo v2 / DenseCL-style checkpoint: backbone with res5, projector(s), queue modules, target."""
    cfg = tiny_cfg(["MODEL.RESNETS.OUT_FEATURES", "['res5']"])
    online = {
        **_prefixed("backbone.", build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict()),
        **_mlp("projector.", (256, 128, 32), seed=seed),
        **_mlp("dense_projector.", (256, 128, 32), seed=seed),
    }
    checkpoint = _soco_checkpoint(online, ("backbone.", "projector.", "dense_projector."), seed)
    for queue in ("queue", "dense_queue"):
        checkpoint["model"][f"{queue}.features"] = torch.randn(16, 32)
        checkpoint["model"][f"{queue}.ptr"] = torch.zeros(1, dtype=torch.long)
        checkpoint["model"][f"{queue}.num_enqueued"] = torch.zeros(1, dtype=torch.long)
    return checkpoint


def build_transfer_model(config: str, opts: list[str] | None = None) -> nn.Module:
    """The fine-tuning model of ``detectron2_configs/<config>`` on the CPU, in eval mode."""
    cfg = load_transfer_config(str(CONFIGS / config), [*(opts or []), "MODEL.DEVICE", "cpu"])
    return build_model(cfg).eval()


def poison_(model: nn.Module) -> None:
    """Fill every float tensor of ``model`` with NaN (integers with -1): anything not loaded shows."""
    with torch.no_grad():
        for value in model.state_dict().values():
            value.fill_(math.nan if value.is_floating_point() else -1)


def _draw_tiny_image(
    rng: np.random.Generator, next_category: Callable[[], int]
) -> tuple[Image.Image, list[tuple[int, list[int], list[float]]]]:
    """A 96-128 px image of 1-3 coloured shapes on a noisy background, and its objects.

    ``next_category()`` gives each shape's category id: odd ids are drawn as rectangles, even ids as
    ellipses. Objects are ``(category, [x, y, w, h], polygon [x0, y0, x1, y1, ...])``.
    """
    width, height = int(rng.integers(96, 129)), int(rng.integers(96, 129))
    canvas = Image.fromarray(rng.integers(0, 60, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        category = next_category()
        color = tuple(int(c) for c in rng.integers(120, 256, 3))
        if category % 2 == 1:
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        else:
            draw.ellipse([x, y, x + w - 1, y + h - 1], fill=color)
            angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            polygon = np.stack([x + w / 2 * (1 + np.cos(angles)), y + h / 2 * (1 + np.sin(angles))], 1)
            polygon = [round(float(v), 1) for v in polygon.reshape(-1)]
        objects.append((category, [x, y, w, h], polygon))
    return canvas, objects


def _instance_annotations(image_id: int, objects, first_id: int, category_of=lambda c: c) -> list[dict]:
    """COCO / LVIS annotation dicts of ``_draw_tiny_image`` objects, ids counted from ``first_id``."""
    return [
        {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": category_of(category),
            "bbox": bbox,
            "area": float(bbox[2] * bbox[3]),
            "segmentation": [polygon],
            "iscrowd": 0,
        }
        for i, (category, bbox, polygon) in enumerate(objects)
    ]


def write_tiny_coco_dataset(folder: Path, num_images: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """A COCO-format instance dataset of coloured rectangles (category 1) and ellipses (category 2).

    Images are 96-128 px PNGs on a noisy background, with 1-3 shapes each, their boxes and polygon
    masks. Returns (annotation json path, image folder).
    """
    rng = np.random.default_rng(seed)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas, objects = _draw_tiny_image(rng, lambda: int(rng.integers(1, 3)))
        annotations += _instance_annotations(image_id, objects, first_id=len(annotations) + 1)
        name = f"shapes_{image_id:03d}.png"
        canvas.save(image_dir / name)
        images.append({"id": image_id, "file_name": name, "width": canvas.width, "height": canvas.height})
    categories = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}]
    json_file = folder / "annotations.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_file, image_dir


# The tiny shapes under LVIS v1 category ids: rectangles are "box" (143), ellipses "ball" (41); images
# also list "frisbee" (474) as verified absent, so frisbee detections count as false positives.
LVIS_SHAPE_CATEGORIES = {1: 143, 2: 41}
LVIS_ABSENT_CATEGORY = 474


def write_tiny_lvis_dataset(root: Path, num_images: int = 6, seed: int = 0) -> Path:
    """The tiny shapes as LVIS v1 in Detectron2's builtin layout under ``root`` ($DETECTRON2_DATASETS).

    Writes ``lvis/lvis_v1_{train,val}.json`` (both over the same images, with all 1203 LVIS v1
    categories, as Detectron2's ``lvis_v1_*`` metadata requires) and the JPEGs their ``coco_url``
    points to, ``coco/train2017/*.jpg``. Returns ``root``.
    """
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    rng = np.random.default_rng(seed)
    image_dir = root / "coco" / "train2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas, objects = _draw_tiny_image(rng, lambda: int(rng.integers(1, 3)))
        annotations += _instance_annotations(
            image_id, objects, len(annotations) + 1, category_of=LVIS_SHAPE_CATEGORIES.get
        )
        name = f"{image_id:012d}.jpg"
        canvas.save(image_dir / name, quality=95)
        images.append(
            {
                "id": image_id,
                "width": canvas.width,
                "height": canvas.height,
                "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "neg_category_ids": [LVIS_ABSENT_CATEGORY],
                "not_exhaustive_category_ids": [],
            }
        )
    counts = {c: sum(a["category_id"] == c for a in annotations) for c in LVIS_SHAPE_CATEGORIES.values()}
    categories = [
        {**c, "image_count": int(counts.get(c["id"], 0) > 0), "instance_count": counts.get(c["id"], 0)}
        for c in LVIS_CATEGORIES
    ]
    (root / "lvis").mkdir(parents=True, exist_ok=True)
    content = json.dumps({"images": images, "annotations": annotations, "categories": categories})
    for split in ("train", "val"):
        (root / "lvis" / f"lvis_v1_{split}.json").write_text(content)
    return root


def _voc_annotation_xml(fileid: str, width: int, height: int, objects: list[tuple[str, list[int]]]) -> str:
    """Pascal VOC ``Annotations/<fileid>.xml`` with 1-based inclusive pixel boxes."""
    boxes = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
        f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
        for name, (x, y, w, h) in objects
    )
    return (
        f"<annotation><folder>VOC</folder><filename>{fileid}.jpg</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size><segmented>0</segmented>{boxes}</annotation>"
    )


def _write_voc_year(folder: Path, num_images: int, rng: np.random.Generator) -> None:
    """One ``VOC<year>`` folder; the 20 classes go to the shapes in turn, and images are added past
    ``num_images`` until every class has an object."""
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    drawn: list[int] = []

    def next_category() -> int:
        drawn.append(len(drawn) % len(CLASS_NAMES) + 1)
        return drawn[-1]

    fileids: list[str] = []
    while len(fileids) < num_images or len(drawn) < len(CLASS_NAMES):
        canvas, objects = _draw_tiny_image(rng, next_category)
        fileid = f"{folder.name}_{len(fileids):06d}"
        canvas.save(folder / "JPEGImages" / f"{fileid}.jpg", quality=95)
        named = [(CLASS_NAMES[category - 1], bbox) for category, bbox, _ in objects]
        xml = _voc_annotation_xml(fileid, canvas.width, canvas.height, named)
        (folder / "Annotations" / f"{fileid}.xml").write_text(xml)
        fileids.append(fileid)
    for split in ("trainval", "test"):
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(fileids) + "\n")


def write_tiny_voc_dataset(root: Path, num_images: int = 6, seed: int = 0) -> Path:
    """The tiny shapes as Pascal VOC 2007 and 2012 in Detectron2's builtin layout under ``root``.

    ``VOC{2007,2012}/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{trainval,test}.txt}``, at
    least ``num_images`` each and enough for every one of the 20 classes to have an object; trainval
    and test list the same images. Returns ``root``.
    """
    for offset, year in enumerate(("2007", "2012")):
        _write_voc_year(root / f"VOC{year}", num_images, np.random.default_rng(seed + offset))
    return root


# Overrides that make a bundled fine-tuning config train and test in seconds on the tiny dataset.
TINY_FINETUNE = TINY_R50 + [
    "MODEL.DEVICE", "cpu",
    "MODEL.ROI_HEADS.NUM_CLASSES", "2",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "100",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
    "INPUT.MIN_SIZE_TRAIN", "(96,)",
    "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128",
    "TEST.DETECTIONS_PER_IMAGE", "20",
    "TEST.PRECISE_BN.NUM_ITER", "2",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.BASE_LR", "0.005",
    "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.CHECKPOINT_PERIOD", "1000",
    "DATALOADER.NUM_WORKERS", "0",
    "SEED", "1",
]  # fmt: skip


BACKBONE_KEY = re.compile(r"(?:^|\.)(?:stem|res[2-5]\.\d+)\.")  # excludes the C4 head's extra res5.norm
FPN_KEY = re.compile(r"^backbone\.fpn_")
BOX_HEAD_KEY = re.compile(r"^roi_heads\.box_head\.")


def torchvision_oracle(name: str) -> str:
    """Detectron2 suffix name of a torchvision key, by Detectron2's documented substring rules."""
    if "layer" not in name:
        name = "stem." + name
    for t in range(4):
        name = name.replace(f"layer{t + 1}", f"res{t + 2}")
    for t in range(1, 4):
        name = name.replace(f"bn{t}", f"conv{t}.norm")
    return name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def soco_official_oracle(name: str) -> str:
    """Detectron2 suffix name of an original SoCo neck / head key (soco.md section 7)."""
    m = re.match(r"neck\.(lateral_convs|fpn_convs)\.(\d)\.(conv|bn)\.(.+)", name)
    if m:
        kind = "fpn_lateral" if m[1] == "lateral_convs" else "fpn_output"
        return f"{kind}{int(m[2]) + 2}." + ("norm." if m[3] == "bn" else "") + m[4]
    m = re.match(r"head\.(conv|bn|fc)(\d)\.(.+)", name)
    if m:
        return (
            f"box_head.{'fc' if m[1] == 'fc' else 'conv'}{m[2]}." + ("norm." if m[1] == "bn" else "") + m[3]
        )
    return torchvision_oracle(name.removeprefix("encoder."))


def model_key(suffix: str, fpn_model: bool) -> str:
    """Where Detectron2's suffix matching puts a converted tensor."""
    if suffix.startswith("fpn_"):
        return "backbone." + suffix
    if suffix.startswith("box_head."):
        return "roi_heads." + suffix
    if fpn_model:
        return "backbone.bottom_up." + suffix
    return ("roi_heads." if suffix.startswith("res5.") else "backbone.") + suffix


def load_round_trip(tmp_path, checkpoint, config, opts=None):
    """Convert, write the .pkl, load it into a NaN-filled model; return (model state, weights, report)."""
    weights, report = convert_checkpoint(checkpoint)
    path = tmp_path / "converted.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    model = build_transfer_model(config, opts)
    expected_check = check_transfer(model.state_dict(), weights)
    poison_(model)
    DetectionCheckpointer(model).load(str(path))
    state = model.state_dict()
    assert expected_check.ok, expected_check.summary()
    parts = [BACKBONE_KEY] + ([FPN_KEY] if report.architecture.fpn_channels else [])
    parts += [BOX_HEAD_KEY] if report.architecture.box_head else []
    for key, value in state.items():
        if any(p.search(key) for p in parts):
            assert key in expected_check.loaded, f"{key} is not filled by the checkpoint"
            filled = torch.isfinite(value).all() if value.is_floating_point() else (value >= 0).all()
            assert filled, f"{key} was not loaded"
    return state, weights, report


def assert_sources_in_place(state, sources: dict[str, torch.Tensor], oracle, fpn_model: bool):
    for source_key, value in sources.items():
        key = model_key(oracle(source_key), fpn_model)
        assert torch.equal(state[key], value), f"{source_key} -> {key} differs"


def ours_oracle(name: str) -> str:
    return re.sub(r"^(backbone\.bottom_up\.|backbone\.|roi_heads\.)", "", name)
