"""Running a command-line ``main``: the shared exit convention of the converters and tools."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a bad input (``ValueError``, ``KeyError``, ``TypeError``, ``OSError``) ends with
    a one-line ``error: ...`` on stderr and exit status 2 instead of a traceback."""
    try:
        return main(argv)
    except (ValueError, KeyError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
