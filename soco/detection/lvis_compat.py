"""Make the ``lvis`` package (0.5.3, its newest release) evaluate under numpy >= 1.24, numpy 2 included.

``LVISEval.accumulate`` (``lvis/eval.py``, lines 361-362) casts with ``np.float``, the alias of the
builtin ``float`` that numpy deprecated in 1.20 and removed in 1.24; every LVIS evaluation therefore
ends in ``AttributeError: module 'numpy' has no attribute 'float'``. It is the only removed numpy name
that lvis 0.5.3 uses (``tests/test_detection_lvis_compat.py`` checks every ``np.*`` name of every lvis
module against the installed numpy).

The fix stays inside ``lvis.eval``: its global ``np`` becomes a view of numpy that adds the aliases
numpy no longer has and forwards every other name to numpy. numpy itself and every other module are
left untouched. ``evaluation.build_evaluator`` applies it before it builds Detectron2's
``LVISEvaluator``, in every process that evaluates. Drop this module once soco pins an lvis release
that no longer uses the aliases.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

# The removed numpy aliases lvis 0.5.3 uses, and the builtin each one named (numpy 1.20 release notes,
# "Deprecations"). Only these: asking numpy 2 for other removed names (np.object, np.str) warns.
LVIS_NUMPY_ALIASES: dict[str, type] = {"float": float}


class NumpyWithAliases(types.ModuleType):
    """numpy as seen by one module: the given aliases, then every attribute of numpy itself."""

    def __init__(self, aliases: dict[str, Any]):
        super().__init__(np.__name__, np.__doc__)
        self.__dict__.update(aliases)

    def __getattr__(self, name: str) -> Any:  # called only for names the aliases do not hold
        return getattr(np, name)


def patch_lvis_numpy_aliases() -> None:
    """Give ``lvis.eval`` the aliases it uses that numpy lacks (once; a no-op on numpy < 1.24)."""
    try:
        import lvis.eval
    except ImportError as e:
        raise ImportError(
            f"LVIS evaluation needs the 'lvis' package ({e}); "
            "install it with `pip install --no-deps lvis==0.5.3` (tools/setup_env.sh does)"
        ) from e
    if isinstance(lvis.eval.np, NumpyWithAliases):
        return
    missing = {name: value for name, value in LVIS_NUMPY_ALIASES.items() if not hasattr(np, name)}
    if missing:
        lvis.eval.np = NumpyWithAliases(missing)
