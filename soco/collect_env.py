"""Print the software environment soco runs in: ``python -m soco.collect_env``."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import platform
import sys

from tabulate import tabulate


def _version(module_name: str) -> str:
    try:
        return getattr(importlib.import_module(module_name), "__version__", "unknown")
    except ImportError as err:
        return f"not importable ({err})"


def detectron2_origin() -> str:
    """How Detectron2 was installed: the official source build or the PyPI republication."""
    for dist_name, origin in (
        ("detectron2", "official (source build)"),
        ("sal-detectron2", "PyPI sal-detectron2"),
    ):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        return f"{origin}, {dist.version}"
    return "unknown (importable, but no package metadata)"


def _has_detectron2_ops() -> str:
    try:
        importlib.import_module("detectron2._C")
    except ImportError:
        return "no (python only: no rotated/deformable ops; ROIAlign via torchvision)"
    return "yes"


def _opencv() -> str:
    try:
        import cv2
    except ImportError as err:
        return f"not importable ({err})"
    ximgproc = (
        "with ximgproc" if hasattr(cv2, "ximgproc") else "WITHOUT ximgproc (selective search unavailable)"
    )
    return f"{cv2.__version__} {ximgproc}"


def collect_env_info() -> list[tuple[str, str]]:
    """Rows (name, value) describing the environment."""
    import torch

    cuda = "not available"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"{torch.version.cuda}: {names}"
    return [
        ("Python", sys.version.split()[0]),
        ("Platform", platform.platform()),
        ("soco", _version("soco")),
        ("torch", torch.__version__),
        ("torchvision", _version("torchvision")),
        ("CUDA", cuda),
        ("detectron2", _version("detectron2")),
        ("detectron2 origin", detectron2_origin()),
        ("detectron2._C", _has_detectron2_ops()),
        ("fvcore", _version("fvcore")),
        ("OpenCV", _opencv()),
        ("scikit-image", _version("skimage")),
        ("numpy", _version("numpy")),
        ("pycocotools", metadata.version("pycocotools")),
    ]


def main() -> None:
    print(tabulate(collect_env_info(), tablefmt="simple"))


if __name__ == "__main__":
    main()
