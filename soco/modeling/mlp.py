"""Projector / predictor MLPs shared by every method."""

from __future__ import annotations

from torch import nn

from .batch_norm import NaiveSyncBatchNorm1d

#: 1-D norms by name, as Detectron2's ``get_norm`` names the 2-D ones.
NORMS_1D = {"BN": nn.BatchNorm1d, "SyncBN": nn.SyncBatchNorm, "naiveSyncBN": NaiveSyncBatchNorm1d}


def get_norm1d(norm: str, channels: int) -> nn.Module | None:
    """A 1-D normalization layer by name: "" (none), "BN", "SyncBN" or "naiveSyncBN".

    torch's ``SyncBatchNorm`` behaves as plain batch norm when no process group is initialized, so
    "SyncBN" also runs in a single CPU process; several CPU processes (gloo) need "naiveSyncBN".
    """
    if norm == "":
        return None
    if norm not in NORMS_1D:
        raise ValueError(f"unknown 1-D norm {norm!r}; expected '' or one of {sorted(NORMS_1D)}")
    return NORMS_1D[norm](channels)


class MLP(nn.Sequential):
    """Linear -> [norm] -> ReLU -> Linear [-> norm]: the BYOL/SoCo projector and predictor, MoCo v2's head.

    Input ``(N, in_dim)``, output ``(N, out_dim)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, norm: str = "BN", last_norm: bool = False):
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        hidden_norm = get_norm1d(norm, hidden_dim)
        if hidden_norm is not None:
            layers.append(hidden_norm)
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        if last_norm:
            out_norm = get_norm1d(norm, out_dim)
            if out_norm is None:
                raise ValueError("last_norm=True needs a norm")
            layers.append(out_norm)
        super().__init__(*layers)
