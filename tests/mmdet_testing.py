"""MMDetection 3.x in a subprocess, for the export test (test_checkpoint_mmdet.py).

MMDetection is installed apart from soco (``requirements-mmdet.txt`` -> ``$VENV/mmdet-site``, a step of
tools/setup_env.sh) and only this script, run as its own process, puts it on ``sys.path``. mmcv-lite has
no compiled ``mmcv.ops`` (RoIAlign, NMS, ...): :class:`OpsStandIn` answers those imports with
parameter-free modules, enough to *build* a detector and read its state dict, not to run one.

    python tests/mmdet_testing.py SITE REQUEST_JSON  ->  JSON on stdout

``REQUEST_JSON``: ``{"configs": {name: config file}, "load": [[name, weights file], ...]}``. Output:
``{"shapes": {name: {key: shape}}, "differ": {weights file: [keys not equal after loading]}}``, where
loading is mmengine's own ``load_checkpoint`` (the code behind ``load_from``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

from torch import nn

SITE = Path(sys.prefix) / "mmdet-site"  # where tools/setup_env.sh installs requirements-mmdet.txt
STAND_IN_MODULES = ("mmcv._ext", "mmcv.ops")


def missing_install_message() -> str | None:
    """Why the isolated MMDetection install cannot be used, or None when it is there."""
    if (SITE / "mmdet" / "__init__.py").is_file():
        return None
    return (
        f"MMDetection for the export test is not installed in {SITE}: run 'make setup' "
        f"(tools/setup_env.sh) or '{sys.executable} -m pip install --no-deps --target {SITE} "
        "-r requirements-mmdet.txt'"
    )


class BuildOnlyOp(nn.Module):
    """What every name of the stand-in ``mmcv.ops`` is: constructible with any arguments, no parameters."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        name = f"{type(self).__module__}.{type(self).__name__}"
        raise NotImplementedError(f"{name} is a build-only stand-in (mmcv-lite has no compiled ops)")


class OpsStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook serving ``mmcv.ops`` / ``mmcv._ext``: any name imported from them is a parameter-free
    ``nn.Module`` subclass whose forward raises (building a model works, running one does not)."""

    def find_spec(self, name, path, target=None):
        if name in STAND_IN_MODULES or name.startswith("mmcv.ops."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def stand_in(attr: str) -> type:
            if attr.startswith("__"):
                raise AttributeError(attr)
            cls = type(attr, (BuildOnlyOp,), {"__module__": spec.name})
            setattr(module, attr, cls)
            return cls

        module.__getattr__ = stand_in
        return module

    def exec_module(self, module):
        pass


def main(site: str, request: dict) -> dict:
    sys.path.insert(0, site)
    sys.meta_path.insert(0, OpsStandIn())
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    register_all_modules()
    models = {name: MODELS.build(Config.fromfile(path).model) for name, path in request["configs"].items()}
    out = {"shapes": {}, "differ": {}}
    for name, model in models.items():
        out["shapes"][name] = {key: list(value.shape) for key, value in model.state_dict().items()}
    for name, path in request["load"]:
        model = models[name]
        load_checkpoint(model, path, map_location="cpu", strict=False, logger="silent")
        exported = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        state = model.state_dict()
        out["differ"][path] = [key for key, value in exported.items() if not torch.equal(state[key], value)]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
