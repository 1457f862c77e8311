"""`import soco` registers what configs name; the proposal tools never load torch; imports run one way."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Layers from the bottom up: a module may import its own layer and the layers below, never one above.
LAYERS = [
    ("soco_proposals",),
    ("soco.config", "soco.data"),
    ("soco.modeling", "soco.solver", "soco.checkpoint", "soco.detection"),
    ("soco.evaluation",),
    ("soco.engine",),
]


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_soco_lets_detectron2_build_the_bundled_c4_config():
    # Detectron2's own train_net.py plus `import soco`: no soco config function is called.
    out = _run(
        "import soco\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import build_model\n"
        "cfg = get_cfg()\n"
        f"cfg.merge_from_file('{REPO}/detectron2_configs/coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml')\n"
        "cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.RESNETS.NORM', 'BN'])\n"
        "print(type(build_model(cfg).roi_heads).__name__)\n"
    )
    assert out.strip().endswith("Res5ROIHeadsExtraNorm")


def test_import_soco_registers_every_name_the_configs_use():
    out = _run(
        "import soco\n"
        "from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY\n"
        "from soco.data import VIEW_GENERATOR_REGISTRY\n"
        "from soco.solver import OPTIMIZER_REGISTRY\n"
        "names = [n for r in (META_ARCH_REGISTRY, ROI_HEADS_REGISTRY, VIEW_GENERATOR_REGISTRY, "
        "OPTIMIZER_REGISTRY) for n, _ in r]\n"
        "print(' '.join(names))\n"
    )
    names = set(out.split())
    assert {"SoCoFPN", "SoCoC4", "MoCo", "SwAV", "DenseCL", "Res5ROIHeadsExtraNorm"} <= names
    assert {"SoCoFPNViews", "SoCoFPNStarViews", "SoCoC4Views", "MoCoV2Views", "MultiCropViews"} <= names
    assert {"LARS", "SGD"} <= names


def _module_files(package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of ``package`` (packages by their ``__init__.py``)."""
    files = (REPO / package.replace(".", "/")).rglob("*.py")
    return {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in files}


def test_proposal_workers_import_no_torch_torchvision_or_detectron2():
    modules = sorted(_module_files("soco_proposals"))
    assert "soco_proposals.generate" in modules and "soco_proposals.image_list" in modules
    out = _run(
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(m for m in ('torch', 'torchvision', 'detectron2', 'soco') if m in sys.modules))\n"
    )
    assert out.strip() == ""


def _imported_modules(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("soco", "soco_proposals")}


def _layer(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


@pytest.mark.parametrize("package", ["soco_proposals", "soco"])
def test_imports_run_one_way(package):
    upward = []
    for module, path in sorted(_module_files(package).items()):
        own = _layer(module)
        if own is None:  # the soco package itself (the registration point) and soco.collect_env
            continue
        for imported in _imported_modules(path, module):
            theirs = _layer(imported)
            if theirs is not None and theirs > own:
                upward.append(f"{module} imports {imported}")
    assert upward == []
