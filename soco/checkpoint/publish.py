"""Publish a soco pretraining checkpoint: keep the online network, strip training state.

The output keeps ``{"model": online state dict}`` (``backbone.*``, ``roi_heads.*`` and the method
heads), so every converter still reads it, and is named ``<name>-<first 8 hex of sha256>.<suffix>``:
``.safetensors`` by default (tensors only, nothing to unpickle), ``.pth`` or ``.pkl`` on request.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from soco_proposals.fileio import sha256_of

from .convert import AUTHOR, format_drops
from .formats import QUEUE_PATTERN, TARGET_PATTERN, SocoFormat
from .io import load_checkpoint, save_weights

PUBLISHED_SUFFIXES = (".safetensors", ".pth", ".pkl")

# Entries of the model state dict that are not weights of the published online network.
_NOT_PUBLISHED = (
    (re.compile(TARGET_PATTERN), "momentum target network"),
    (re.compile(QUEUE_PATTERN), "negative-key queue"),
)


@dataclass
class PublishReport:
    """What the published file keeps and what it strips."""

    path: str = ""
    kept: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    def summary(self, verbose: bool = False) -> str:
        lines = [f"published {self.path}", f"  kept {self.kept} tensors of the online network"]
        return "\n".join(lines + format_drops(self.dropped, verbose, noun="entries"))


def _reason(key: str) -> str | None:
    return next((reason for pattern, reason in _NOT_PUBLISHED if pattern.match(key)), None)


def publish_checkpoint(source: str, output: str) -> PublishReport:
    """Write the online weights of ``source`` to ``<output stem>-<sha256[:8]><suffix>``, where ``output``
    ends with the suffix (one of :data:`PUBLISHED_SUFFIXES`; none: ``.safetensors``); return the report."""
    suffix = next((s for s in PUBLISHED_SUFFIXES if output.endswith(s)), None)
    stem = output[: -len(suffix)] if suffix else output
    suffix = suffix or ".safetensors"
    checkpoint = load_checkpoint(source)
    if not SocoFormat().detect(checkpoint):
        raise ValueError(
            f"{source}: not a soco pretraining checkpoint (expected {{'model': {{'backbone.*', ...}}}}); "
            "converters/convert_to_detectron2.py reads the other releases"
        )
    report = PublishReport()
    online = {}
    for key, value in checkpoint["model"].items():
        reason = _reason(key)
        if reason is None:
            online[key] = value
        else:
            report.dropped.append((key, reason))
    report.dropped += [(key, "training state") for key in checkpoint if key != "model"]
    report.kept = len(online)

    partial = f"{stem}.partial{suffix}"
    save_weights({"model": online, "__author__": AUTHOR}, partial)
    report.path = f"{stem}-{sha256_of(partial)[:8]}{suffix}"
    os.replace(partial, report.path)
    return report
