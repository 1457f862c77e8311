"""`import soco` registers what configs name; the proposal tools never load torch; imports run one way."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Layers from the bottom up: a module may import its own layer and the layers below, never one above.
#: Each package is a layer of its own, so two packages that import each other always fail the check.
LAYERS = [
    ("soco_proposals",),
    ("soco.utils",),
    ("soco.config",),
    ("soco.data",),
    ("soco.modeling",),
    ("soco.solver",),
    ("soco.checkpoint",),
    ("soco.detection",),
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


def _upward_imports(imports: dict[str, set[str]]) -> list[str]:
    """``"a imports b"`` for each import (``{module: modules it imports}``) of a layer above its own."""
    upward = []
    for module, imported_modules in sorted(imports.items()):
        own = _layer(module)
        if own is None:  # the soco package itself (the registration point) and soco.collect_env
            continue
        for imported in sorted(imported_modules):
            theirs = _layer(imported)
            if theirs is not None and theirs > own:
                upward.append(f"{module} imports {imported}")
    return upward


@pytest.mark.parametrize("package", ["soco_proposals", "soco"])
def test_imports_run_one_way(package):
    imports = {module: _imported_modules(path, module) for module, path in _module_files(package).items()}
    assert _upward_imports(imports) == []


def test_two_packages_importing_each_other_fail_the_check(tmp_path):
    # The circle soco.checkpoint <-> soco.detection this layering removed, one side imported inside a
    # function as it was: the check reads every import statement of a file, not only the top-level ones.
    verify = tmp_path / "verify.py"
    verify.write_text("def check():\n    from soco.detection import load_transfer_config\n")
    freeze = tmp_path / "freeze.py"
    freeze.write_text("from soco.checkpoint import PART_MODEL_KEYS\n")
    imports = {
        "soco.checkpoint.verify": _imported_modules(verify, "soco.checkpoint.verify"),
        "soco.detection.freeze": _imported_modules(freeze, "soco.detection.freeze"),
    }
    assert _upward_imports(imports) == ["soco.checkpoint.verify imports soco.detection"]


def test_every_soco_package_has_a_layer_of_its_own():
    packages = {f"soco.{p.parent.name}" for p in (REPO / "soco").glob("*/__init__.py")}
    assert all(len(layer) == 1 for layer in LAYERS)
    assert packages <= {prefix for (prefix,) in LAYERS}, "a new package needs its place in LAYERS"
