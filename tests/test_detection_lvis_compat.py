"""The lvis package under today's numpy: every numpy name it uses resolves, and only lvis.eval changes."""

import ast
import importlib
import inspect
import pkgutil
from importlib.metadata import version

import lvis
import numpy
import pytest

from soco.detection.lvis_compat import LVIS_NUMPY_ALIASES, NumpyWithAliases, patch_lvis_numpy_aliases


def _numpy_names_used(module) -> set[str]:
    """Every ``np.<name>`` attribute read in the source of ``module``."""
    tree = ast.parse(inspect.getsource(module))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np"
    }


def test_every_numpy_name_of_every_lvis_module_resolves():
    patch_lvis_numpy_aliases()
    modules = [importlib.import_module(f"lvis.{m.name}") for m in pkgutil.iter_modules(lvis.__path__)]
    assert "lvis.eval" in {m.__name__ for m in modules}
    unresolved = {
        f"{module.__name__}: np.{name}"
        for module in modules
        if hasattr(module, "np")
        for name in _numpy_names_used(module)
        if not hasattr(module.np, name)
    }
    assert not unresolved, f"lvis {version('lvis')} uses names numpy {numpy.__version__} lacks: {unresolved}"
    lvis_eval = importlib.import_module("lvis.eval")
    assert "float" in _numpy_names_used(lvis_eval), "lvis no longer uses np.float: drop lvis_compat.py"


def test_the_aliases_are_local_to_lvis_eval():
    import lvis.eval
    import lvis.vis

    patch_lvis_numpy_aliases()
    patched = lvis.eval.np
    patch_lvis_numpy_aliases()
    assert lvis.eval.np is patched, "applying twice wraps once"
    assert lvis.vis.np is numpy, "other lvis modules keep numpy itself"
    if hasattr(numpy, "float"):  # numpy < 1.24: nothing to fix
        assert patched is numpy
        return
    assert isinstance(patched, NumpyWithAliases)
    assert patched.float is float and patched.cumsum is numpy.cumsum and patched.float32 is numpy.float32
    assert not hasattr(numpy, "float"), "numpy itself is not given the alias"
    for name, builtin in LVIS_NUMPY_ALIASES.items():
        assert getattr(patched, name) is (getattr(numpy, name) if hasattr(numpy, name) else builtin)


def test_a_view_forwards_missing_names_as_numpy_does():
    view = NumpyWithAliases({"float": float})
    with pytest.raises(AttributeError):
        view.no_such_numpy_name  # noqa: B018
    assert view.__name__ == "numpy" and view.ndarray is numpy.ndarray
