"""Registry of proposal backends: ``name -> function(image uint8 (H, W, 3) RGB) -> int64 (M, 4) xywh``.

* ``reference``: SoCo's selective search, exact and vectorised (:mod:`soco_proposals.selective_search`).
* ``opencv-fast`` / ``opencv-quality``: OpenCV ximgproc selective search (opencv-contrib), run
  single-threaded so that one worker process uses one core. It is a different algorithm (several
  colour spaces and strategies, its own Felzenszwalb settings) and returns many more boxes.

Every backend returns boxes in the SoCo convention ``w = max_x - min_x``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .selective_search import selective_search

ProposalBackend = Callable[[np.ndarray], np.ndarray]
PROPOSAL_BACKENDS: dict[str, ProposalBackend] = {}


def register_backend(name: str) -> Callable[[ProposalBackend], ProposalBackend]:
    """Decorator adding a backend to :data:`PROPOSAL_BACKENDS` under ``name``."""

    def register(backend: ProposalBackend) -> ProposalBackend:
        if name in PROPOSAL_BACKENDS:
            raise ValueError(f"proposal backend {name!r} is already registered")
        PROPOSAL_BACKENDS[name] = backend
        return backend

    return register


def get_backend(name: str) -> ProposalBackend:
    """The backend registered as ``name``, with a clear error listing the known ones."""
    if name not in PROPOSAL_BACKENDS:
        raise KeyError(
            f"unknown proposal backend {name!r}; available: {', '.join(sorted(PROPOSAL_BACKENDS))}"
        )
    return PROPOSAL_BACKENDS[name]


@register_backend("reference")
def reference_backend(image: np.ndarray) -> np.ndarray:
    """SoCo's selective search (scale 300, sigma 0.9, min_size 100), identical to the original."""
    return selective_search(image)


def _opencv_selective_search(image: np.ndarray, quality: bool) -> np.ndarray:
    import cv2

    cv2.setNumThreads(1)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV wants BGR
    if quality:
        search.switchToSelectiveSearchQuality()
    else:
        search.switchToSelectiveSearchFast()
    rects = np.asarray(search.process(), dtype=np.int64).reshape(-1, 4)
    # OpenCV's w, h count pixels (inclusive extent); SoCo's are one less
    rects[:, 2:] -= 1
    return rects


@register_backend("opencv-fast")
def opencv_fast_backend(image: np.ndarray) -> np.ndarray:
    """OpenCV ximgproc selective search, fast mode."""
    return _opencv_selective_search(image, quality=False)


@register_backend("opencv-quality")
def opencv_quality_backend(image: np.ndarray) -> np.ndarray:
    """OpenCV ximgproc selective search, quality mode."""
    return _opencv_selective_search(image, quality=True)
